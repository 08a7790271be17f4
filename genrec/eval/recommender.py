"""Evaluate any model that scores the whole catalog for a batch of histories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.data.dataset import SplitExamples
from genrec.eval.metrics import metrics_from_ranks, target_ranks


@runtime_checkable
class Recommender(Protocol):
    """What :func:`evaluate_recommender` needs: one score per catalog item for each history."""

    def scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor | np.ndarray: ...


def evaluate_recommender(
    model: Recommender,
    examples: SplitExamples,
    ks: Iterable[int] = (5, 10),
    exclude_history: bool = False,
    batch_size: int = 2048,
    progress: bool = False,
) -> dict[str, float]:
    """Full-ranking metrics over ``examples`` without ever holding the (U, N) score matrix.

    ``exclude_history`` removes each user's history items from their ranking. It is off by default
    because the published P5/TIGER numbers rank against the full catalog.
    """
    ks = tuple(ks)
    n = len(examples)
    if n == 0:
        raise ValueError("no examples to evaluate")
    ranks = torch.empty(n, dtype=torch.int64)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="evaluate", disable=not progress, leave=False):
        stop = min(start + batch_size, n)
        histories = examples.histories[start:stop]
        scores = model.scores(histories)
        ranks[start:stop] = target_ranks(
            scores, examples.targets[start:stop], exclude=histories if exclude_history else None
        )
    return metrics_from_ranks(ranks, ks)
