"""Catalog-grounded explanation targets: what the recommended item is, and what it shares with the history.

For catalogs with metadata but no reviews (Beauty), the verbalized attributes are the explanation target.
Every phrase comes from :class:`~genrec.data.attributes.ItemAttributes`, so the text names only what the
catalog says: an item without brand, categories or price gets a shorter explanation, never a guessed one.
"""

from __future__ import annotations

from collections.abc import Sequence

from genrec.data.attributes import MIN_TITLE_WORDS, ItemAttributes, PriceBands
from genrec.data.dataset import Catalog, Item
from genrec.data.text import normalize_phrase

NO_ATTRIBUTES = "It is recommended from your past purchases."


def verbalize_explanation(item: Item, history: Sequence[Item], price_bands: PriceBands | None = None) -> str:
    """One sentence on what ``item`` is, one on the brand, category and price band it shares with
    ``history`` (each only when true); :data:`NO_ATTRIBUTES` when the catalog gives nothing to say."""
    target = ItemAttributes.of(item, price_bands)
    past = [ItemAttributes.of(h, price_bands) for h in history]
    sentences = [s for s in (_describe(target), _link(target, past)) if s]
    return " ".join(sentences) or NO_ATTRIBUTES


def verbalize_explanations(
    catalog: Catalog,
    histories: Sequence[Sequence[int]],
    items: Sequence[int],
    price_bands: PriceBands | None = None,
) -> list[str]:
    """:func:`verbalize_explanation` of each ``(history, item)`` pair of catalog indices."""
    return [
        verbalize_explanation(catalog[i], [catalog[j] for j in h], price_bands)
        for h, i in zip(histories, items)
    ]


def _quotable(title: str) -> bool:
    return len(normalize_phrase(title).split()) >= MIN_TITLE_WORDS


def _describe(target: ItemAttributes) -> str:
    """``"<title>" is a <band> <category> product from <brand>.``, with absent parts left out."""
    subject = f'"{target.title}"' if _quotable(target.title) else "This item"
    kind = " ".join(p for p in (target.price_band, target.categories[-1] if target.categories else None) if p)
    if kind:
        text = f"{subject} is {_article(kind)} {kind} product"
        return f"{text} from {target.brand}." if target.brand else f"{text}."
    if target.brand:
        return f"{subject} is made by {target.brand}."
    return ""


def _link(target: ItemAttributes, past: Sequence[ItemAttributes]) -> str:
    """The attributes the item shares with the history, each backed by the history items that have it."""
    if not past:
        return ""
    clauses = []
    if target.brand:
        same = [h for h in past if h.brand and normalize_phrase(h.brand) == normalize_phrase(target.brand)]
        if same:
            example = next((h.title for h in reversed(same) if _quotable(h.title)), "")
            clauses.append(f"you bought {target.brand} before" + (f' ("{example}")' if example else ""))
    category = _shared_category(target, past)
    if category:
        k = sum(_has_category(h, category) for h in past)
        noun = f"{_article(category)} {category} product" if k == 1 else f"{category} products"
        clauses.append(f"{_share(k, len(past))} {noun}")
    if target.price_band:
        k = sum(h.price_band == target.price_band for h in past)
        if k:
            whom = "your past item" if len(past) == 1 else "all of them" if k == len(past) else f"{k} of them"
            clauses.append(f"it is in the same {target.price_band} price band as {whom}")
    if not clauses:
        return ""
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return f"It fits your history: {joined}."


def _shared_category(target: ItemAttributes, past: Sequence[ItemAttributes]) -> str | None:
    """The most specific category of the item that a history item also has. The first category is the
    department every item shares, so it counts only when the item has no other."""
    candidates = target.categories[1:] or target.categories
    return next((c for c in reversed(candidates) if any(_has_category(h, c) for h in past)), None)


def _has_category(attrs: ItemAttributes, category: str) -> bool:
    key = normalize_phrase(category)
    return any(normalize_phrase(c) == key for c in attrs.categories)


def _share(k: int, n: int) -> str:
    """Subject and verb of "k of your n past items are ..." in plain English."""
    if n == 1:
        return "your past item is"
    if k == n:
        return f"all {n} of your past items are"
    return f"1 of your {n} past items is" if k == 1 else f"{k} of your {n} past items are"


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"
