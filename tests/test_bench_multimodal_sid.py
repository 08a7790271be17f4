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
