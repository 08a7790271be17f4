"""The attributes an explanation may name about an item: title, brand, categories and a price band.

Both the template verbalizer (training targets) and the faithfulness checker (evaluation) read items through
:class:`ItemAttributes`, so what one writes is exactly what the other accepts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from genrec.data.dataset import Catalog, Item

PRICE_BAND_NAMES = ("budget", "mid-range", "premium")
# Titles shorter than this are not matched as item names (a one-word title reads as an ordinary word), so
# the verbalizer quotes only titles at least this long.
MIN_TITLE_WORDS = 2


@dataclass(frozen=True)
class PriceBands:
    """Three named price ranges: below ``edges[0]`` is budget, below ``edges[1]`` mid-range, else premium.

    Bands, not amounts, because an explanation should say "budget" rather than quote a price that changes.
    """

    edges: tuple[float, float]

    def __post_init__(self) -> None:
        low, high = self.edges
        if not (0 < low < high and math.isfinite(high)):
            raise ValueError(f"price band edges must satisfy 0 < low < high < inf, got {self.edges}")

    def band(self, price: object) -> str | None:
        """The band of ``price``; ``None`` when it is missing or not a positive number."""
        if not _is_price(price):
            return None
        index = int(price >= self.edges[0]) + int(price >= self.edges[1])
        return PRICE_BAND_NAMES[index]

    @classmethod
    def from_prices(cls, prices: Iterable[object]) -> PriceBands:
        """Terciles of ``prices`` (missing ones skipped): each band holds about a third of the catalog,
        whatever its currency or price level."""
        values = np.array([p for p in prices if _is_price(p)], dtype=float)
        distinct = np.unique(values)
        if len(distinct) < 3:
            raise ValueError(f"price bands need 3 distinct positive prices, got {len(distinct)}")
        low, high = (float(q) for q in np.quantile(values, [1 / 3, 2 / 3]))
        if low >= high:  # a catalog dominated by one price: split its distinct prices instead
            low, high = float(distinct[len(distinct) // 3]), float(distinct[2 * len(distinct) // 3])
        return cls((low, high))


def price_bands_of(catalog: Catalog) -> PriceBands | None:
    """Tercile bands of the catalog's prices, or ``None`` when it has too few prices to band."""
    try:
        return PriceBands.from_prices(item.fields.get("price") for item in catalog)
    except ValueError:
        return None


def _is_price(value: object) -> TypeGuard[float]:
    """A positive finite number; loaders leave unparseable prices as ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class ItemAttributes:
    """What the catalog says about one item; empty fields are ``""``, ``None`` or ``()``, never guessed."""

    item_id: str
    title: str
    brand: str | None
    categories: tuple[str, ...]
    price_band: str | None

    @classmethod
    def of(cls, item: Item, price_bands: PriceBands | None = None) -> ItemAttributes:
        brand = item.fields.get("brand")
        brand = brand.strip() if isinstance(brand, str) and brand.strip() else None
        categories = tuple(c.strip() for c in item.categories if isinstance(c, str) and c.strip())
        band = price_bands.band(item.fields.get("price")) if price_bands else None
        return cls(item.id, item.title.strip(), brand, categories, band)
