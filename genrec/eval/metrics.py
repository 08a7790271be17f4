"""Full-ranking leave-one-out metrics: one held-out target per user, ranked against every item.

Two entry points share one definition of rank:

* :func:`evaluate_scores` for models that score the whole catalog (SASRec, popularity, a user encoder);
* :func:`evaluate_topk` for generative models that emit a ranked list of items (beam search).

With a single relevant item, Recall@K equals HitRate@K, and NDCG@K is ``1 / log2(rank + 1)`` when the
target is in the top ``K`` (1-based rank) and 0 otherwise; the ideal DCG is 1.

**Ties are counted pessimistically**: the rank of the target is the number of items scoring *at least*
as high as it, itself included (``1 + #higher + #tied others``). A model that gives every item the same
score therefore ranks every target last, instead of looking perfect (optimistic ties) or random
(random tie-breaking depends on the seed). Real-valued model scores essentially never tie, so this only
bites degenerate models, which is where it should.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _check_ks(ks: Iterable[int], limit: int | None = None) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks must name at least one cutoff, e.g. ks=(5, 10)")
    for k in ks:
        if k < 1:
            raise ValueError(f"cutoff k must be >= 1, got {k}")
        if limit is not None and k > limit:
            raise ValueError(f"cutoff k={k} is larger than the {limit} ranked items given per user")
    return ks


def metrics_from_ranks(ranks: ArrayLike, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """Recall@K and NDCG@K averaged over users, from 1-based target ranks (``inf``/huge = not ranked)."""
    ks = _check_ks(ks)
    r = torch.as_tensor(ranks, dtype=torch.float64)
    if r.ndim != 1 or r.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {tuple(r.shape)}")
    out: dict[str, float] = {}
    for k in ks:
        hit = r <= k
        out[f"recall@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r.clamp(max=k) + 1.0), 0.0).mean().item()
    return out


def _as_targets(targets: ArrayLike, num_users: int, num_items: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if t.ndim != 1 or t.shape[0] != num_users:
        raise ValueError(f"targets must have shape ({num_users},), got {tuple(t.shape)}")
    if t.dtype.is_floating_point:
        raise ValueError(f"targets must be integer item indices, got dtype {t.dtype}")
    t = t.long()
    if num_users and (t.min() < 0 or t.max() >= num_items):
        raise ValueError(
            f"targets must be item indices in [0, {num_items}), got range [{t.min()}, {t.max()}]"
        )
    return t


def target_ranks(
    scores: ArrayLike,
    targets: ArrayLike,
    exclude: Sequence[ArrayLike] | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """1-based pessimistic rank of each user's target among all items, as an int64 tensor (U,).

    ``exclude[u]`` lists item indices (e.g. the user's history) that are removed from user ``u``'s
    ranking by setting their score to ``-inf``; if it contains the target, the target ranks last.
    Work is chunked over users so a (U, N) float64 copy is never made.
    """
    s = torch.as_tensor(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a (num_users, num_items) matrix, got shape {tuple(s.shape)}")
    num_users, num_items = s.shape
    t = _as_targets(targets, num_users, num_items)
    if exclude is not None and len(exclude) != num_users:
        raise ValueError(f"exclude has {len(exclude)} entries for {num_users} users")
    ranks = torch.empty(num_users, dtype=torch.int64)
    for start in range(0, num_users, batch_size):
        stop = min(start + batch_size, num_users)
        chunk = s[start:stop]
        if not chunk.dtype.is_floating_point:
            chunk = chunk.double()
        if torch.isnan(chunk).any():
            bad = start + int(torch.isnan(chunk).any(dim=1).nonzero()[0])
            raise ValueError(f"scores contain NaN (first at user row {bad})")
        if exclude is not None:
            chunk = chunk.clone()
            rows, cols = _exclusion_coords(exclude[start:stop], num_items)
            chunk[rows, cols] = -torch.inf
        target_scores = chunk.gather(1, t[start:stop, None])
        ranks[start:stop] = (chunk >= target_scores).sum(dim=1)
    return ranks


def _exclusion_coords(exclude: Sequence[ArrayLike], num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    lens = [len(e) for e in exclude]
    if sum(lens) == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    cols = torch.as_tensor(np.concatenate([np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]))
    if cols.min() < 0 or cols.max() >= num_items:
        raise ValueError(f"exclude holds item indices outside [0, {num_items})")
    rows = torch.repeat_interleave(torch.arange(len(exclude)), torch.as_tensor(lens))
    return rows, cols


def evaluate_scores(
    scores: ArrayLike,
    targets: ArrayLike,
    ks: Iterable[int] = (5, 10),
    exclude: Sequence[ArrayLike] | None = None,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Recall@K / NDCG@K from a full (U, N) score matrix; see the module docstring for ties.

    Example: ``evaluate_scores(model.scores(histories), targets, ks=(5, 10))``
    -> ``{"recall@5": ..., "ndcg@5": ..., "recall@10": ..., "ndcg@10": ...}``.
    """
    ks = _check_ks(ks)
    return metrics_from_ranks(target_ranks(scores, targets, exclude=exclude, batch_size=batch_size), ks)


def topk_ranks(topk_items: ArrayLike, targets: ArrayLike) -> torch.Tensor:
    """1-based position of each target in its ranked list, ``K + 1`` when absent; ``-1`` pads lists."""
    items = torch.as_tensor(
        np.asarray(topk_items) if not isinstance(topk_items, torch.Tensor) else topk_items
    )
    if items.ndim != 2:
        raise ValueError(f"topk_items must be a (num_users, K) matrix, got shape {tuple(items.shape)}")
    if items.dtype.is_floating_point:
        raise ValueError(f"topk_items must be integer item indices, got dtype {items.dtype}")
    num_users, k = items.shape
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if t.ndim != 1 or t.shape[0] != num_users:
        raise ValueError(f"targets must have shape ({num_users},), got {tuple(t.shape)}")
    match = items.long() == t.long()[:, None]
    # First occurrence counts: a list that repeats the target does not get credit twice.
    first = torch.where(match.any(dim=1), match.int().argmax(dim=1) + 1, torch.full((num_users,), k + 1))
    return first.long()


def evaluate_topk(topk_items: ArrayLike, targets: ArrayLike, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """Recall@K / NDCG@K from ranked lists (U, K); every cutoff must be <= K. ``-1`` pads short lists."""
    items = np.asarray(topk_items) if not isinstance(topk_items, torch.Tensor) else topk_items
    if items.ndim != 2:
        raise ValueError(f"topk_items must be a (num_users, K) matrix, got shape {tuple(items.shape)}")
    ks = _check_ks(ks, limit=items.shape[1])
    return metrics_from_ranks(topk_ranks(items, targets), ks)


def catalog_coverage(topk_items: ArrayLike, num_items: int, k: int | None = None) -> float:
    """Share of the catalog that appears in at least one user's top-``k`` list (invalid entries ignored)."""
    items = np.asarray(topk_items)
    if items.ndim != 2:
        raise ValueError(f"topk_items must be a (num_users, K) matrix, got shape {items.shape}")
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    items = items[:, :k] if k is not None else items
    valid = items[(items >= 0) & (items < num_items)]
    return float(np.unique(valid).size / num_items)


def valid_item_rate(topk_items: ArrayLike, num_items: int) -> float:
    """Share of list entries that are catalog items; padding ``-1`` and unknown codes count as invalid."""
    items = np.asarray(topk_items)
    if items.ndim != 2 or items.size == 0:
        raise ValueError(f"topk_items must be a non-empty (num_users, K) matrix, got shape {items.shape}")
    return float(((items >= 0) & (items < num_items)).mean())


def evaluate_lists(
    topk_items: ArrayLike, targets: ArrayLike, num_items: int, ks: Iterable[int] = (5, 10)
) -> dict[str, float]:
    """What a generative recommender's lists are judged on: Recall/NDCG@K, coverage of the full lists
    (``coverage@K`` for their width K) and the valid-item rate."""
    width = np.asarray(topk_items).shape[-1]
    return {
        **evaluate_topk(topk_items, targets, ks),
        f"coverage@{width}": catalog_coverage(topk_items, num_items),
        "valid_item_rate": valid_item_rate(topk_items, num_items),
    }
