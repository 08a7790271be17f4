import math

import pytest

from genrec.data import Catalog, Item, ItemAttributes, PriceBands
from genrec.data.attributes import price_bands_of


def test_price_bands():
    bands = PriceBands((10.0, 25.0))
    assert [bands.band(p) for p in (5, 10.0, 24.99, 25, 300)] == [
        "budget", "mid-range", "mid-range", "premium", "premium",
    ]  # fmt: skip
    assert [bands.band(p) for p in (None, True, "12", -1.0, 0, math.nan, math.inf)] == [None] * 7
    with pytest.raises(ValueError, match="0 < low < high"):
        PriceBands((25.0, 10.0))


def test_price_bands_from_prices_are_terciles():
    bands = PriceBands.from_prices([1, 2, 3, 4, 5, 6, 7, None, "x"])
    assert bands.edges == pytest.approx((3.0, 5.0))
    assert PriceBands.from_prices([5, 5, 5, 5, 5, 5, 1, 9]).edges == (5.0, 9.0)  # one price dominates
    with pytest.raises(ValueError, match="3 distinct positive prices, got 2"):
        PriceBands.from_prices([1, 2, 2, None])


def test_price_bands_of_catalog_without_prices_is_none():
    assert price_bands_of(Catalog([Item("a", "A"), Item("b", "B", {"price": 3.0})])) is None


def test_item_attributes_never_guess():
    item = Item("x", " A Title ", {"brand": "  ", "categories": "Nails", "price": 12.0})
    attrs = ItemAttributes.of(item, PriceBands((10.0, 25.0)))
    assert attrs == ItemAttributes("x", "A Title", None, ("Nails",), "mid-range")
    assert ItemAttributes.of(Item("y")) == ItemAttributes("y", "", None, (), None)
