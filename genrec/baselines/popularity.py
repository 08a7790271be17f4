"""Most-popular baseline: the same ranking for everyone, by interaction count in the training part."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genrec.data.dataset import SequenceDataset
from genrec.errors import EmptyHistoryError


class Popularity:
    """Scores every item by its count over the training sequences (``seq[:-2]``), so that neither the
    validation nor the test targets leak into the ranking."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, dataset: SequenceDataset) -> Popularity:
        self.counts = dataset.item_popularity("train").astype(np.float32)
        return self

    @property
    def num_items(self) -> int:
        return len(self._counts())

    def _counts(self) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("Popularity is not fitted: call fit(dataset) first")
        return self.counts

    def scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(U, N) float32: every row is the popularity vector. Histories are checked, not used."""
        counts = self._counts()
        for u, h in enumerate(histories):
            if len(h) == 0:
                raise EmptyHistoryError(f"history {u} is empty")
        return torch.from_numpy(counts).expand(len(histories), -1)

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items (U, k) int64 and their counts (U, k); ties broken by lower item index."""
        counts = self._counts()
        if not 1 <= k <= len(counts):
            raise ValueError(f"k must be in [1, {len(counts)}], got {k}")
        scores = self.scores(histories)
        order = np.argsort(-counts, kind="stable")[:k]
        return np.tile(order, (len(histories), 1)), scores[:, order].numpy().copy()
