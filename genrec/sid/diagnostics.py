"""Quality diagnostics of semantic IDs, computed from codes alone so any tokenizer can be compared."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from genrec.data.dataset import Item
from genrec.sid.collisions import group_codes


def level_usage(values: np.ndarray, size: int) -> dict[str, float]:
    """Utilization (fraction of codes used) and perplexity (exp entropy; = size when perfectly uniform)."""
    counts = np.bincount(values, minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {
        "size": int(size),
        "used": int((counts > 0).sum()),
        "utilization": float((counts > 0).mean()),
        "perplexity": float(np.exp(-(p * np.log(p)).sum())),
    }


def code_diagnostics(semantic_codes: np.ndarray, codebook_sizes: list[int]) -> dict[str, Any]:
    """Diagnostics of the codes *before* de-duplication (``(n, levels)``, without the dedup level).

    ``collision_rate`` is the fraction of items that share their full code with at least one other
    item; ``code_length_distribution`` counts items whose ID needs the extra de-dup token
    (length ``levels + 1``) versus those already unique (length ``levels``).
    """
    codes = np.asarray(semantic_codes, dtype=np.int64)
    n, levels = codes.shape
    inverse, counts = group_codes(codes)
    sizes = counts[inverse]
    colliding = int((sizes > 1).sum())
    group_hist = np.bincount(counts)
    return {
        "num_items": int(n),
        "levels": int(levels),
        "num_unique_codes": int(len(counts)),
        "collision_rate": colliding / n,
        "colliding_items": colliding,
        "largest_group": int(counts.max()),
        "group_size_distribution": {int(s): int(c) for s, c in enumerate(group_hist) if s > 0 and c > 0},
        "per_level": [level_usage(codes[:, lv], codebook_sizes[lv]) for lv in range(levels)],
        "code_length_distribution": {int(levels): int(n - colliding), int(levels + 1): colliding},
    }


def dedup_distribution(dedup: np.ndarray) -> dict[int, int]:
    """How many items got each de-dup value (0 = first item of its group, or unique)."""
    hist = np.bincount(np.asarray(dedup, dtype=np.int64))
    return {int(v): int(c) for v, c in enumerate(hist) if c > 0}


def item_labels(items: Iterable[Item]) -> np.ndarray | None:
    """Integer category label per item, for purity: its top-3 category path, else its genre set
    (MovieLens); ``None`` when no item has either."""
    names = []
    for item in items:
        genres = item.fields.get("genres") or []
        names.append(" > ".join(item.categories[:3]) if item.categories else "|".join(genres))
    if not any(names):
        return None
    return np.unique(names, return_inverse=True)[1].reshape(-1)


def category_purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of items whose label is the most common label among items sharing their code.

    ``codes`` is one level ``(n,)`` or a prefix ``(n, levels)``: a high purity at level 1 means the
    first token already names the category, which is what makes semantic-ID prefixes meaningful.
    """
    codes = np.asarray(codes, dtype=np.int64)
    groups, _ = group_codes(codes[:, None] if codes.ndim == 1 else codes)
    labels = np.asarray(labels, dtype=np.int64)
    width = int(labels.max()) + 1
    uniq, counts = np.unique(groups * width + labels, return_counts=True)
    best = np.zeros(int(groups.max()) + 1, dtype=np.int64)
    np.maximum.at(best, uniq // width, counts)
    return float(best.sum() / len(labels))
