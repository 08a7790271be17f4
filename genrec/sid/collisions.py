"""Making semantic IDs unique: TIGER's extra de-duplication level and balanced last-level assignment.

Two items with near-identical text land on the same code. TIGER appends one more level that numbers
the items of each collision group ``0..k-1``; that always works but the extra token carries no
meaning. ``balanced_last_level`` first tries to separate colliding items by giving the members of
each same-prefix group *distinct* last-level codes through a min-cost assignment (the exact
counterpart of LC-Rec's Sinkhorn "uniform semantic mapping"). Trade-off: moved items get a
last-level code that is not their nearest one, so their quantization error grows and the last
level becomes less semantic; in exchange far fewer items need the meaningless de-dup token.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from genrec.sid.kmeans import squared_distances


def group_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(inverse, counts)``: group id of each row (rows with equal codes share one) and group sizes."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def dedup_index(codes: np.ndarray) -> np.ndarray:
    """Number the items of each collision group ``0..k-1`` in item order (TIGER's extra level)."""
    inverse, counts = group_codes(codes)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - starts[inverse[order]]
    return rank


def balanced_last_level(codes: np.ndarray, last_residual: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Reassign last-level codes inside each prefix group that has a collision.

    Within a group of ``m`` items sharing all but the last code, the assignment minimises the total
    squared distance of residuals to codewords subject to each code being used at most
    ``ceil(m / K)`` times, so groups of up to ``K`` items become collision-free. Groups without a
    collision already use distinct nearest codes and are left untouched. Returns new codes.
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    k = len(codebook)
    full_inverse, full_counts = group_codes(codes)
    colliding = full_counts[full_inverse] > 1
    if not colliding.any():
        return codes
    if codes.shape[1] > 1:
        prefix_inverse, _ = group_codes(codes[:, :-1])
    else:
        prefix_inverse = np.zeros(len(codes), dtype=np.int64)
    for group in np.unique(prefix_inverse[colliding]):
        members = np.flatnonzero(prefix_inverse == group)
        cap = -(-len(members) // k)
        cost = squared_distances(last_residual[members], codebook)
        rows, cols = linear_sum_assignment(np.tile(cost, (1, cap)))
        codes[members[rows], -1] = cols % k
    return codes
