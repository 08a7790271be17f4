"""Popularity counts only training interactions and ranks everyone the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.baselines import Popularity
from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.errors import EmptyHistoryError
from genrec.eval import evaluate_recommender, evaluate_scores, evaluate_topk


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
    # targets 4, 4, 5 have count 0: ranked 5, 5, 6 after 1, 2 (count 3), 0 (count 2) and 3 (index 3 < 4)
    assert full["recall@3"] == 0.0


def test_full_scores_and_ranked_list_agree_under_ties():
    """The one tie rule: count first, then lower index; both evaluation paths must give the same numbers."""
    catalog = Catalog([Item(str(i)) for i in range(8)])
    # training counts (seq[:-2]): 5 and 6 four times, 2 and 7 three, 0 two, 3 one, 1 and 4 never
    seqs = [[2, 5, 6, 0, 1, 3], [6, 2, 5, 7, 4, 2], [0, 3, 5], [7, 6, 1], [3, 1, 4], [2, 5, 6, 7, 5, 6, 0, 1]]
    ds = SequenceDataset("ties", catalog, [f"u{i}" for i in range(len(seqs))], seqs)
    pop = Popularity().fit(ds)
    ex = ds.test_examples()
    items, counts = pop.recommend(ex.histories, k=8)
    np.testing.assert_array_equal(items[0], [5, 6, 2, 7, 0, 3, 1, 4])
    np.testing.assert_array_equal(counts[0], [4, 4, 3, 3, 2, 1, 0, 0])
    for ks in [(1, 2, 3), (4, 5, 8)]:
        listed = evaluate_topk(items, ex.targets, ks=ks)
        assert evaluate_recommender(pop, ex, ks=ks, batch_size=4) == pytest.approx(listed, abs=1e-12)
    # the ties matter here: pessimistic ranks over the raw counts put target 2 (tied with 7) outside the top 3
    raw = torch.from_numpy(pop.counts).expand(len(ex), -1)
    assert (
        evaluate_scores(raw, ex.targets, ks=(3,))["recall@3"]
        < evaluate_topk(items, ex.targets, ks=(3,))["recall@3"]
    )
    assert torch.unique(pop.scores(ex.histories[:1])).numel() == 8  # no two items tie in the scores


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
