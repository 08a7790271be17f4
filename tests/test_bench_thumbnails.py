"""bench.thumbnails_ml1m helpers: the shuffled control moves everybody; history AUC reads the right way."""

from __future__ import annotations

import numpy as np

from bench.thumbnails_ml1m import derangement, history_scores


def test_derangement_moves_everybody_and_is_seeded():
    for n in (2, 3, 10, 100):
        perm = derangement(n, seed=n)
        assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))
    np.testing.assert_array_equal(derangement(50, seed=1), derangement(50, seed=1))


def test_history_scores_ask_whether_a_users_image_is_nearest_their_own_history():
    rng = np.random.default_rng(0)
    history = rng.normal(size=(40, 16))
    near = history + 0.1 * rng.normal(size=history.shape)
    own = history_scores(near, history, seed=0)
    assert own["auc"] > 0.99 and own["p_value"] < 0.001
    shuffled = history_scores(near[derangement(40, 0)], history, seed=0)
    assert 0.3 < shuffled["auc"] < 0.7 and shuffled["p_value"] > 0.01
    # the question is per image: u's image vs other users' histories. An image that is near every
    # history alike (a common offset) does not count as personal
    common = np.tile(history.mean(0), (40, 1)) + 0.01 * rng.normal(size=history.shape)
    assert abs(history_scores(common, history, seed=0)["auc"] - 0.5) < 0.15
