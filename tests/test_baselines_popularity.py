"""Popularity counts only training interactions and ranks everyone the same way."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.baselines import Popularity
from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.errors import EmptyHistoryError
from genrec.eval import evaluate_recommender, evaluate_scores


@pytest.fixture
def dataset() -> SequenceDataset:
    catalog = Catalog([Item(str(i)) for i in range(6)])
    # item 5 appears only as validation/test targets, item 4 only as a test target
    seqs = [[0, 1, 2, 5, 4], [1, 2, 5, 4], [2, 1, 0, 3, 5]]
    return SequenceDataset("toy", catalog, ["a", "b", "c"], seqs)


def test_counts_use_training_part_only(dataset):
    pop = Popularity().fit(dataset)
    np.testing.assert_array_equal(pop.counts, [2, 3, 3, 0, 0, 0])


def test_scores_and_recommend(dataset):
    pop = Popularity().fit(dataset)
    histories = dataset.test_examples().histories
    scores = pop.scores(histories)
    assert scores.shape == (3, 6)
    items, top = pop.recommend(histories, k=4)
    np.testing.assert_array_equal(items, [[1, 2, 0, 3]] * 3)  # ties broken by lower index
    np.testing.assert_array_equal(top, [[3, 3, 2, 0]] * 3)


def test_evaluate_recommender_matches_full_matrix(dataset):
    pop = Popularity().fit(dataset)
    ex = dataset.test_examples()
    full = evaluate_scores(pop.scores(ex.histories), ex.targets, ks=(1, 3))
    assert evaluate_recommender(pop, ex, ks=(1, 3), batch_size=2) == full
    # targets 4, 4, 5 have count 0 and tie with three other items: pessimistic rank 6
    assert full["recall@3"] == 0.0


def test_exclude_history_helps_when_history_holds_the_top_items(dataset):
    pop = Popularity().fit(dataset)
    ex = dataset.test_examples()
    plain = evaluate_recommender(pop, ex, ks=(5,))
    excluded = evaluate_recommender(pop, ex, ks=(5,), exclude_history=True)
    assert excluded["recall@5"] > plain["recall@5"]


def test_errors(dataset):
    with pytest.raises(RuntimeError, match="not fitted"):
        Popularity().scores([np.array([1])])
    pop = Popularity().fit(dataset)
    with pytest.raises(EmptyHistoryError):
        pop.scores([np.array([1]), np.array([], dtype=np.int64)])
    with pytest.raises(ValueError):
        pop.recommend([np.array([1])], k=0)
    with pytest.raises(ValueError):
        pop.recommend([np.array([1])], k=7)


@pytest.mark.shared_data
def test_beauty_popularity_uses_only_training_interactions(beauty_dir):
    from genrec.data import load_amazon_p5

    ds = load_amazon_p5(beauty_dir)
    pop = Popularity().fit(ds)
    assert pop.counts.sum() == ds.num_interactions - 2 * ds.num_users  # valid and test items left out
    m = evaluate_recommender(pop, ds.test_examples(), ks=(10,))
    assert 0.0 < m["recall@10"] < 0.05  # far below any sequential model, well above zero
