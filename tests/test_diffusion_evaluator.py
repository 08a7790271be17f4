"""Evaluator metrics on crafted inputs with known answers, and the genre CNN on separable images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.diffusion.evaluator import (
    average_precision,
    frechet_distance,
    genre_alignment,
    multilabel_metrics,
    personalization_p_value,
    personalization_scores,
    roc_auc,
    train_genre_evaluator,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_roc_auc_known_answers():
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 0])) == 0.5  # ties count half
    # 1 of the 4 (pos, neg) pairs is misordered
    assert roc_auc(np.array([0.9, 0.3, 0.4, 0.1]), np.array([1, 1, 0, 0])) == 0.75
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_average_precision_known_answer():
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)


def test_multilabel_metrics_perfect_classifier():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    out = multilabel_metrics(labels * 0.8 + 0.1, labels)
    assert out["mAP"] == 1.0 and out["AUC"] == 1.0
    assert out["top1_accuracy"] == 0.75  # the all-negative item has no correct top genre


def test_personalization_identical_features_separate_perfectly():
    feats = np.random.default_rng(0).normal(size=(40, 16))
    assert personalization_scores(feats, feats) == {"auc": 1.0, "win_rate": 1.0}


def test_personalization_shuffled_and_random_are_chance():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 16))
    random = personalization_scores(rng.normal(size=(300, 16)), ref)
    assert abs(random["auc"] - 0.5) < 0.03 and abs(random["win_rate"] - 0.5) < 0.03
    shuffled = personalization_scores(ref[rng.permutation(300)], ref)
    assert abs(shuffled["auc"] - 0.5) < 0.03


def test_personalization_p_value_separates_signal_from_chance():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 8))
    # every permutation scores below the true pairing: p is the smallest possible value
    assert personalization_p_value(ref, ref, num_permutations=99) == pytest.approx(1 / 100)
    # under the null (thumbnails unrelated to users) p-values are uniform: mean near 1/2
    null = [personalization_p_value(rng.normal(size=(50, 8)), ref, 99, seed=s) for s in range(30)]
    assert 0.35 < np.mean(null) < 0.65


def test_personalization_anti_aligned_is_zero():
    feats = np.eye(5)
    assert personalization_scores(-feats + 0.01, feats)["auc"] == 0.0


def test_genre_alignment_known_answers():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    same = genre_alignment(p, p * 3)  # scale-free: distributions are normalised
    assert same["cosine"] == pytest.approx(1.0) and same["js_divergence"] == pytest.approx(0.0)
    disjoint = genre_alignment(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert disjoint["cosine"] == pytest.approx(0.0) and disjoint["js_divergence"] == pytest.approx(1.0)


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([3.0, 0.0, 4.0, 0.0])
    assert frechet_distance(a, a + shift) == pytest.approx(
        25.0, rel=1e-6
    )  # equal covariances: |mu_a - mu_b|^2
    # N(0, I) vs N(0, 4I) in 4-d: tr(I) + tr(4I) - 2 tr(2I) = 4
    assert frechet_distance(rng.normal(size=(20000, 4)), 2 * rng.normal(size=(20000, 4))) == pytest.approx(
        4.0, rel=0.05
    )


@pytest.mark.parametrize(("max_shift", "blur_prob"), [(0, 0.0), (3, 0.5)])
def test_genre_evaluator_learns_separable_colours(max_shift, blur_prob):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(64, 2)).astype(np.float32)
    images = torch.zeros(64, 3, 16, 16, dtype=torch.uint8)
    images[:, 0] = torch.from_numpy(labels[:, 0] * 255).to(torch.uint8).view(-1, 1, 1)  # red <=> genre 0
    images[:, 2] = torch.from_numpy(labels[:, 1] * 255).to(torch.uint8).view(-1, 1, 1)  # blue <=> genre 1
    model = train_genre_evaluator(
        images,
        labels,
        ["red", "blue"],
        steps=60,
        batch_size=32,
        lr=1e-2,
        progress=False,
        max_shift=max_shift,
        blur_prob=blur_prob,
    )
    feats, probs = model.features_and_probs(images.float() / 127.5 - 1)
    assert feats.shape == (64, 128) and probs.shape == (64, 2)
    assert multilabel_metrics(probs, labels)["AUC"] > 0.95
