"""Bootstrap intervals: exact on constant data, cover the mean, shrink with more users, reject bad input."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.eval import bootstrap_interval


def test_constant_values_give_a_point_interval():
    assert bootstrap_interval(np.full(50, 0.25)) == (0.25, 0.25)


def test_interval_covers_the_mean_and_matches_the_binomial_width():
    hits = np.random.default_rng(1).random(4000) < 0.1  # recall@10 of 4,000 users, p = .1
    low, high = bootstrap_interval(hits, num_resamples=2000)
    assert low < hits.mean() < high
    half_width = 1.96 * np.sqrt(hits.mean() * (1 - hits.mean()) / hits.size)  # normal approximation
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert bootstrap_interval(hits, seed=3) != bootstrap_interval(hits, seed=4)  # resampled, not fixed


def test_bad_input_raises():
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([1.0], confidence=1.5)
