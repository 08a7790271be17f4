"""Evaluator metrics on crafted inputs with known answers, and the genre CNN on separable images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.diffusion.evaluator import (
    average_precision,
    copy_rate,
    draw_distractors,
    frechet_distance,
    genre_alignment,
    grounding_accuracy,
    kernel_distance,
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


def test_history_and_future_auc_are_personalization_scores_with_that_reference():
    rng = np.random.default_rng(0)
    history, future = rng.normal(size=(60, 16)), rng.normal(size=(60, 16))
    generated = history + 0.3 * rng.normal(size=history.shape)  # follows the conditioning history only
    assert personalization_scores(generated, history)["auc"] > 0.95  # history AUC
    assert personalization_p_value(generated, history, num_permutations=199) < 0.01
    assert abs(personalization_scores(generated, future)["auc"] - 0.5) < 0.1  # future AUC: chance
    # swapped arguments rank histories per image: "is u's image closer to u's history than to v's?"
    noisy = history + 1.5 * rng.normal(size=history.shape)
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (noisy, history)]
    s = unit[0] @ unit[1].T  # s[u, v] = cos(image u, history v)
    by_image = np.mean([s[u, u] > s[u, v] for u in range(60) for v in range(60) if u != v])
    by_history = np.mean([s[v, v] > s[u, v] for u in range(60) for v in range(60) if u != v])
    assert by_image != by_history
    swapped, straight = personalization_scores(history, noisy), personalization_scores(noisy, history)
    assert swapped["auc"] == pytest.approx(by_image) and straight["auc"] == pytest.approx(by_history)
    assert swapped["win_rate"] == straight["win_rate"]


def _mmd2_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 written out term by term, kernel (x.y / d + 1)^3."""
    d, m = x.shape[1], len(x)

    def k(p, q):
        return (p @ q / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kernel_distance_known_answers():
    # 1-d, k(x, y) = (xy + 1)^3: k_xx(0, 1) = 1, k_yy(1, 2) = 27, k_xy = (1 + 1 + 8 + 27) / 4
    out = kernel_distance(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), num_subsets=1)
    assert out == {"kid": pytest.approx(1 + 27 - 2 * 37 / 4), "kid_std": 0.0}
    x = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    y = np.array([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])
    # subsets are the whole (3-row) sets, in some order, which MMD^2 does not see
    out = kernel_distance(x, y, num_subsets=5, subset_size=10)
    assert out["kid"] == pytest.approx(_mmd2_by_hand(x, y)) and out["kid_std"] == pytest.approx(
        0.0, abs=1e-12
    )
    with pytest.raises(ValueError, match="two samples"):
        kernel_distance(x[:1], y)


def test_kernel_distance_invariants():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    kw = {"num_subsets": 20, "subset_size": 200}
    same = kernel_distance(a, b, **kw)  # two draws of one distribution
    assert abs(same["kid"]) < 0.05 and same["kid_std"] > 0
    shifted = [kernel_distance(a, b + s, **kw)["kid"] for s in (0.25, 0.5, 1.0)]
    assert shifted[0] > 3 * same["kid_std"] and shifted[0] < shifted[1] < shifted[2]
    assert kernel_distance(b + 0.5, a, **kw)["kid"] == pytest.approx(shifted[1], rel=0.1)  # symmetric
    # unequal sizes: subsets capped at the smaller set, estimate stays unbiased
    assert kernel_distance(a[:50], b + 1.0, num_subsets=20)["kid"] == pytest.approx(shifted[2], rel=0.3)


def _clustered(rng, n, genres=4, dim=32):
    labels = rng.integers(0, genres, n)
    centers = np.random.default_rng(123).normal(size=(genres, dim))
    return centers[labels] + rng.normal(size=(n, dim)), labels


def test_copy_rate_copies_novel_and_far():
    rng = np.random.default_rng(0)
    real, labels = _clustered(rng, 800)
    copies = copy_rate(real[:200], real, labels)
    assert copies["copy_rate"] == 1.0 and copies["threshold"] > 0
    far = np.concatenate([np.zeros((200, 32)), rng.normal(size=(200, 64))], 1)  # orthogonal to all real
    real_padded = np.concatenate([real, np.zeros((800, 64))], 1)
    assert copy_rate(far, real_padded, labels)["copy_rate"] == 0.0
    half = copy_rate(np.concatenate([real_padded[:100], far[:100]]), real_padded, labels)
    assert half["copy_rate"] == 0.5
    # fresh samples from the real distribution are not copies: flagged at about the quantile's rate
    fresh = _clustered(rng, 1000)[0]
    assert copy_rate(fresh, real, labels)["copy_rate"] < 0.15
    assert 0.3 < copy_rate(fresh, real, labels, quantile=0.5)["copy_rate"] < 0.7


def test_copy_rate_label_formats_and_duplicates():
    rng = np.random.default_rng(1)
    real, labels = _clustered(rng, 300)
    multi_hot = np.eye(4)[labels]
    assert copy_rate(real[:50], real, labels) == copy_rate(real[:50], real, multi_hot)
    # a duplicated real image is not its own "distinct" neighbour: the threshold does not collapse to 0
    doubled = np.concatenate([real, real])
    assert copy_rate(real[:50], doubled, np.concatenate([labels, labels]))["threshold"] > 0
    with pytest.raises(ValueError, match="same-genre"):
        copy_rate(real[:5], real[:3], np.arange(3))  # every genre has one image


def test_grounding_accuracy_known_answers():
    rng = np.random.default_rng(0)
    own = rng.normal(size=(50, 16))
    distractors = rng.normal(size=(50, 4, 16))
    assert grounding_accuracy(own, own, distractors) == 1.0
    assert grounding_accuracy(distractors[:, 0], own, distractors) == 0.0
    assert grounding_accuracy(2 * own + 0.1 * rng.normal(size=own.shape), own, distractors) == 1.0
    # a tie with one distractor is half a hit
    tied = distractors.copy()
    tied[:, 2] = own
    assert grounding_accuracy(own, own, tied) == 0.5
    # random variants: chance, 1 / (K + 1)
    n, k = 20000, 4
    acc = grounding_accuracy(rng.normal(size=(n, 8)), rng.normal(size=(n, 8)), rng.normal(size=(n, k, 8)))
    assert abs(acc - 1 / (k + 1)) < 0.015


def test_draw_distractors():
    rng = np.random.default_rng(0)
    pool = np.arange(10, 40)
    items = rng.choice(pool, 500)
    drawn = draw_distractors(items, pool, k=4, seed=3)
    assert drawn.shape == (500, 4)
    assert not (drawn == items[:, None]).any()
    assert np.isin(drawn, pool).all()
    assert (np.diff(np.sort(drawn, 1), axis=1) > 0).all()  # distinct within a row
    np.testing.assert_array_equal(drawn, draw_distractors(items, pool, k=4, seed=3))
    # every other pool entry is reachable, roughly uniformly
    counts = np.bincount(drawn.ravel(), minlength=40)[10:]
    assert counts.min() > 0.5 * counts.mean()
    # items outside the pool, and the tightest pool (k + 1 entries including the item)
    assert not np.isin(draw_distractors(np.array([99, 5]), pool, k=4), [99, 5]).any()
    tight = draw_distractors(np.array([1, 3, 5]), np.arange(1, 6), k=4)
    assert all(set(row) == set(range(1, 6)) - {item} for row, item in zip(tight, [1, 3, 5]))
    with pytest.raises(ValueError, match="pool too small"):
        draw_distractors(np.array([1]), np.arange(1, 5), k=4)


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
