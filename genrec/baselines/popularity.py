"""Most-popular baseline: the same ranking for everyone, by interaction count in the training part.

**Tie rule (one for every bench).** Items are ranked by training count, highest first, and equal counts
by lower item index: a strict, deterministic order. :meth:`Popularity.scores` encodes exactly that order
(the first item scores ``N``, the last ``1``), so the full-score path (``evaluate_recommender``, which
counts ties pessimistically) and the ranked-list path (:meth:`Popularity.recommend` + ``evaluate_topk``)
give identical metrics, and a saved top-10 list scores the same in anyone's evaluator. Pessimistic ties
on the raw counts would instead rank a tied group below every position it spans, a list no recommender
can output, and would lower the baseline we compare against (Amazon Beauty R@10 .0106 instead of .0114).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genrec.data.dataset import SequenceDataset
from genrec.errors import EmptyHistoryError


class Popularity:
    """Ranks every item by its count over the training sequences (``seq[:-2]``), so that neither the
    validation nor the test targets leak into the ranking; ties go to the lower item index."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None
        self.order: np.ndarray | None = None
        self._rank_scores: np.ndarray | None = None

    def fit(self, dataset: SequenceDataset) -> Popularity:
        self.counts = dataset.item_popularity("train").astype(np.float32)
        self.order = np.argsort(-self.counts, kind="stable")  # stable: equal counts keep index order
        n = len(self.counts)
        self._rank_scores = np.empty(n, dtype=np.float32)  # exact: float32 holds integers up to 2**24
        self._rank_scores[self.order] = np.arange(n, 0, -1, dtype=np.float32)
        return self

    @property
    def num_items(self) -> int:
        return len(self._fitted()[0])

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.counts is None or self.order is None or self._rank_scores is None:
            raise RuntimeError("Popularity is not fitted: call fit(dataset) first")
        return self.counts, self.order, self._rank_scores

    def scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(U, N) float32, every row the same: ``N`` for the most popular item down to ``1`` for the least.

        Scores encode the tie-broken ranking rather than the raw counts (those are :attr:`counts`), so
        no two items tie. Histories are checked, not used.
        """
        rank_scores = self._fitted()[2]
        for u, h in enumerate(histories):
            if len(h) == 0:
                raise EmptyHistoryError(f"history {u} is empty")
        return torch.from_numpy(rank_scores).expand(len(histories), -1)

    def recommend(
        self, histories: Sequence[np.ndarray], k: int, exclude_history: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items (U, k) int64 and their training counts (U, k), in :meth:`scores`' order.

        ``exclude_history=True`` skips each user's own items, so every user gets ``k`` new ones.
        """
        counts, order, _ = self._fitted()
        if not 1 <= k <= len(counts):
            raise ValueError(f"k must be in [1, {len(counts)}], got {k}")
        self.scores(histories)  # same history checks as the full-score path
        if not exclude_history:
            top = order[:k]
            return np.tile(top, (len(histories), 1)), np.tile(counts[top], (len(histories), 1))
        rows = []
        for u, h in enumerate(histories):
            row = order[~np.isin(order, np.asarray(h, dtype=np.int64))][:k]
            if len(row) < k:
                raise ValueError(f"history {u} leaves only {len(row)} items, fewer than k={k}")
            rows.append(row)
        top_rows = np.stack(rows)
        return top_rows, counts[top_rows]
