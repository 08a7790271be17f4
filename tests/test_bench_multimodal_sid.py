"""The ML-1M multimodal bench's own pieces: the cold split, content kNN and poster -> title retrieval."""

from __future__ import annotations

import numpy as np

from bench.multimodal_sid_ml1m import knn_lists, retrieval_recall, split_cold
from genrec.data import make_synthetic


def test_cold_items_never_reach_training_and_users_keep_a_split():
    ds = make_synthetic(num_users=60, num_items=80, num_categories=4, seed=0)
    cold, warm = split_cold(ds, 0.1, seed=0)
    assert cold.sum() == 8
    assert not any(cold[s].any() for s in warm.sequences)
    assert all(len(s) >= 3 for s in warm.sequences)
    original = dict(zip(ds.users, ds.sequences))
    for user, seq in zip(warm.users, warm.sequences):
        assert seq.tolist() == [i for i in original[user] if not cold[i]]  # order kept, nothing else lost
    again, _ = split_cold(ds, 0.1, seed=0)
    assert np.array_equal(cold, again)


def test_content_knn_ranks_the_nearest_unseen_items_first():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    top = knn_lists(emb, [np.array([0]), np.array([3])], k=2)
    assert top.tolist() == [[1, 2], [4, 2]]


def test_retrieval_recall_known_answers():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(30, 8))
    items = np.arange(30)
    assert retrieval_recall(text, text, items, k=1) == 1.0  # an image embedding equal to its title's
    assert retrieval_recall(np.roll(text, 1, axis=0), text, items, k=1) == 0.0  # every poster paired wrongly


def test_the_imputed_variant_space_fills_cold_behaviour_and_keeps_blocks_unit():
    from bench.multimodal_sid_ml1m import IMPUTED, joint_space, variant_embeddings

    rng = np.random.default_rng(0)
    text, image = rng.standard_normal((40, 6)), rng.standard_normal((40, 3))
    behaviour = text[:, :4] * 2.0  # what content predicts
    behaviour[:5] = 0.0  # cold: in no training sequence
    embeddings = {"text": text, "image": image, "behaviour": behaviour}
    plain = joint_space(variant_embeddings("fused + behaviour", embeddings))
    imputed = joint_space(variant_embeddings(IMPUTED, embeddings))
    assert plain.shape == imputed.shape == (40, 13)
    np.testing.assert_allclose(np.linalg.norm(plain[5:], axis=1), np.sqrt(3), rtol=1e-5)  # 3 unit blocks
    assert not plain[:5, 9:].any()  # cold behaviour: zero, unless imputed
    np.testing.assert_allclose(np.linalg.norm(imputed[:5, 9:], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(imputed[5:], plain[5:])
