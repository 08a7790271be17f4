"""The attributes an explanation may name about an item: title, brand, categories and a price band.

The template verbalizer (training targets), grounded decoding and the faithfulness checker (evaluation) all
read items through :class:`ItemAttributes` and :class:`AttributeVocabulary`, so what one writes is exactly
what the others accept.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

import numpy as np

from genrec.data.dataset import Catalog, Item
from genrec.data.text import STOPWORDS, PhraseMatcher, normalize_phrase, word_tokens

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


AttributeKind = Literal["brand", "category", "item", "price"]


@dataclass(frozen=True)
class Attribute:
    """One thing an explanation can name. ``value`` is the normalized phrase, or the item id for items."""

    kind: AttributeKind
    value: str


@dataclass
class AttributeVocabulary:
    """Every phrase that names a brand, category, item title or price band of the catalog.

    Matching is case-insensitive over whole words (:class:`~genrec.data.text.PhraseMatcher`): a mention must
    spell the whole brand, category or title ("L'Oreal" alone does not name "L'Oreal Paris"). Phrases made
    only of stopwords are left out. Common words that are also category names ("face", "sun") are matched
    as categories, which makes the checker strict rather than lenient.
    """

    phrases: Mapping[str, frozenset[Attribute]]
    price_bands: PriceBands | None = None
    # how the catalog spells each phrase ("L'Oreal Paris" for "l oreal paris"): what a model writes
    surfaces: Mapping[str, frozenset[Attribute]] = field(default_factory=dict)
    _matcher: PhraseMatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._matcher = PhraseMatcher(self.phrases)

    @classmethod
    def from_catalog(
        cls, catalog: Catalog, price_bands: PriceBands | None = None, min_title_words: int = MIN_TITLE_WORDS
    ) -> AttributeVocabulary:
        """Brands, categories and titles of ``catalog``; titles shorter than ``min_title_words`` words are
        skipped (a one-word title reads as an ordinary word). ``price_bands`` defaults to the catalog's
        terciles (:func:`~genrec.data.attributes.price_bands_of`); a catalog without prices has none."""
        bands = price_bands or price_bands_of(catalog)
        phrases: dict[str, set[Attribute]] = {}
        surfaces: dict[str, set[Attribute]] = {}

        def add(surface: str, attribute: Attribute) -> None:
            phrase = normalize_phrase(surface)
            if phrase and not set(phrase.split()) <= STOPWORDS:
                phrases.setdefault(phrase, set()).add(attribute)
                if attribute.kind != "item":  # titles: see title_surfaces
                    surfaces.setdefault(surface, set()).add(attribute)

        for item in catalog:
            attrs = ItemAttributes.of(item)
            if attrs.brand:
                add(attrs.brand, Attribute("brand", normalize_phrase(attrs.brand)))
            for category in attrs.categories:
                add(category, Attribute("category", normalize_phrase(category)))
            if len(normalize_phrase(attrs.title).split()) >= min_title_words:
                add(attrs.title, Attribute("item", item.id))
        if bands is not None:
            for name in PRICE_BAND_NAMES:
                add(name, Attribute("price", normalize_phrase(name)))
        freeze = lambda d: {k: frozenset(v) for k, v in d.items()}  # noqa: E731
        return cls(freeze(phrases), bands, freeze(surfaces))

    def attributes_of(self, item: Item) -> frozenset[Attribute]:
        """The attributes ``item`` really has (its id, brand, categories, price band)."""
        attrs = ItemAttributes.of(item, self.price_bands)
        out = {Attribute("item", item.id)}
        if attrs.brand:
            out.add(Attribute("brand", normalize_phrase(attrs.brand)))
        out.update(Attribute("category", normalize_phrase(c)) for c in attrs.categories)
        if attrs.price_band:
            out.add(Attribute("price", normalize_phrase(attrs.price_band)))
        return frozenset(out)

    def title_surfaces(self, items: Iterable[Item]) -> dict[str, frozenset[Attribute]]:
        """The titles of ``items`` that name them (long enough to be matched), as spelled in the catalog."""
        return {
            item.title.strip(): frozenset({Attribute("item", item.id)})
            for item in items
            if normalize_phrase(item.title) in self.phrases
        }

    def attributes_of_all(self, items: Iterable[Item]) -> frozenset[Attribute]:
        """The attributes any of ``items`` has (a history's)."""
        return frozenset().union(*(self.attributes_of(item) for item in items))

    def feature_phrases(self, kinds: Collection[str] = ("brand", "category")) -> list[str]:
        """Phrases naming an attribute of ``kinds``: the feature vocabulary for FMR/FCR/DIV on a catalog."""
        return sorted(p for p, attrs in self.phrases.items() if any(a.kind in kinds for a in attrs))

    def item_features(self, item: Item, kinds: Collection[str] = ("brand", "category")) -> set[str]:
        """The item's own phrases of ``kinds``: its ground-truth features for FMR."""
        return {a.value for a in self.attributes_of(item) if a.kind in kinds and a.value in self.phrases}

    def find(self, text: str) -> list[tuple[str, frozenset[Attribute]]]:
        """Each vocabulary phrase named in ``text`` (text order) with the attributes it can refer to."""
        return [(phrase, self.phrases[phrase]) for phrase in self._matcher.find(text)]

    def delexicalize(self, text: str) -> str:
        """``text``'s words with every phrase it names replaced by its kind (``<brand>``, ``<item>``, ...):
        what is left is the phrasing, which distinct catalog facts alone cannot make unique."""
        tokens = word_tokens(text)
        out, last = [], 0
        for start, end in self._matcher.spans(tokens):
            kinds = sorted({a.kind for a in self.phrases[" ".join(tokens[start:end])]})
            out += [*tokens[last:start], "<" + "|".join(kinds) + ">"]
            last = end
        return " ".join(out + tokens[last:])
