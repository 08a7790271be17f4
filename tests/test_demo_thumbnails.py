"""The demo's thumbnail judgement: label histograms and the personalization AUC with its shuffled control."""

from __future__ import annotations

import numpy as np

from genrec.data.synthetic import STYLES
from genrec.demo.thumbnails import label_histograms, personalization


def test_label_histograms_skip_unreadable_images_for_category_only():
    categories = np.array([0, 0, 2, -1])
    styles = np.array([1, 1, 3, 0])
    hist = label_histograms(categories, styles, 3, [np.array([0, 1]), np.array([2, 3])])
    assert hist.shape == (2, 3 + len(STYLES))
    np.testing.assert_allclose(hist[0, :3], [1, 0, 0])
    np.testing.assert_allclose(hist[1, :3], [0, 0, 1])  # the unreadable image does not count
    np.testing.assert_allclose(hist[1, 3:], [0.5, 0, 0, 0.5])


def test_personalization_is_one_for_matching_users_and_chance_when_shuffled():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(8), size=40)
    matched = personalization(reference + rng.normal(0, 0.01, reference.shape), reference, seed=0)
    assert matched["personalization_auc"] > 0.99
    assert abs(matched["shuffled_auc"] - 0.5) < 0.05
    assert matched["p_value"] < 0.01
    unrelated = personalization(rng.dirichlet(np.ones(8), size=40), reference, seed=0)
    assert abs(unrelated["personalization_auc"] - 0.5) < 0.1 and unrelated["p_value"] > 0.01
