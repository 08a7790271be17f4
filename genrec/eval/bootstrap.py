"""Bootstrap confidence intervals for per-user metrics (a mean over users, or a paired difference)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def bootstrap_interval(
    values: ArrayLike, num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one number per user), resampling users.

    For a difference between two models on the same users, pass the per-user differences: the paired
    interval is far tighter than two separate ones, because both models face the same hard users.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(num_resamples, values.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
