"""Known answers for the full-ranking metrics, the tie rule, exclusion, and the top-k path."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from genrec.eval import (
    catalog_coverage,
    evaluate_lists,
    evaluate_scores,
    evaluate_topk,
    metrics_from_ranks,
    target_ranks,
    topk_ranks,
    valid_item_rate,
)


def test_rank_one_gives_perfect_scores():
    scores = np.array([[0.1, 0.9, 0.3, 0.2]])
    m = evaluate_scores(scores, np.array([1]), ks=(1, 3))
    assert m == {"recall@1": 1.0, "ndcg@1": 1.0, "recall@3": 1.0, "ndcg@3": 1.0}


def test_rank_three_known_answer():
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.0]])  # target item 2 is third
    m = evaluate_scores(scores, np.array([2]), ks=(2, 3, 5))
    assert m["recall@2"] == 0.0 and m["ndcg@2"] == 0.0
    assert m["recall@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx(1 / math.log2(4))
    assert m["ndcg@5"] == pytest.approx(0.5)


def test_average_over_users():
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    m = evaluate_scores(scores, np.array([0, 1]), ks=(1, 2))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)


def test_ties_are_pessimistic():
    constant = torch.zeros(4, 100)
    assert target_ranks(constant, torch.tensor([0, 5, 50, 99])).tolist() == [100] * 4
    assert evaluate_scores(constant, np.array([0, 5, 50, 99]), ks=(10,))["recall@10"] == 0.0
    # target tied with one other item and beaten by one: rank 3
    assert target_ranks(np.array([[1.0, 2.0, 1.0, 0.0]]), np.array([0])).tolist() == [3]


def test_integer_scores_are_accepted():
    assert target_ranks(np.array([[5, 9, 1]]), np.array([0])).tolist() == [2]


def test_exclude_masks_items_and_can_exclude_the_target():
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]])
    ranks = target_ranks(scores, np.array([2, 1]), exclude=[np.array([0, 1]), np.array([1])])
    assert ranks.tolist() == [1, 4]
    assert target_ranks(scores, np.array([2, 1]), exclude=[np.array([], dtype=np.int64)] * 2).tolist() == [
        3,
        2,
    ]


def test_chunking_does_not_change_ranks():
    rng = np.random.default_rng(0)
    scores = rng.random((37, 50)).astype(np.float32)
    targets = rng.integers(0, 50, size=37)
    exclude = [rng.choice(50, size=3, replace=False) for _ in range(37)]
    full = target_ranks(scores, targets, exclude=exclude, batch_size=4096)
    assert torch.equal(full, target_ranks(scores, targets, exclude=exclude, batch_size=4))


def test_scores_and_topk_agree_on_the_same_ranking():
    rng = np.random.default_rng(1)
    scores = rng.random((64, 30))
    targets = rng.integers(0, 30, size=64)
    topk = np.argsort(-scores, axis=1)[:, :20]
    a = evaluate_scores(scores, targets, ks=(1, 5, 10, 20))
    b = evaluate_topk(topk, targets, ks=(1, 5, 10, 20))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key])
    assert a["recall@20"] < 1.0  # some targets fall outside the list, so the check is not vacuous


def test_topk_padding_absent_and_duplicates():
    items = np.array([[4, 7, -1, -1], [1, 1, 2, 3], [5, 6, 8, 9]])
    assert topk_ranks(items, np.array([7, 1, 0])).tolist() == [2, 1, 5]
    m = evaluate_topk(items, np.array([7, 1, 0]), ks=(1, 4))
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@4"] == pytest.approx(2 / 3)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1.0) / 3)


def test_metrics_from_ranks_known_answer():
    m = metrics_from_ranks(np.array([1, 2, 11]), ks=(10,))
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_coverage_and_valid_item_rate():
    items = np.array([[0, 1, -1], [1, 2, 99]])
    assert catalog_coverage(items, num_items=10) == pytest.approx(0.3)
    assert catalog_coverage(items, num_items=10, k=1) == pytest.approx(0.2)
    assert valid_item_rate(items, num_items=10) == pytest.approx(4 / 6)


def test_evaluate_lists_bundles_ranking_coverage_and_validity():
    items = np.array([[0, 1, -1], [1, 2, 99]])
    out = evaluate_lists(items, np.array([1, 5]), num_items=10, ks=(1, 3))
    assert out == {
        "recall@1": 0.0,
        "ndcg@1": 0.0,
        "recall@3": pytest.approx(0.5),
        "ndcg@3": pytest.approx(0.5 / math.log2(3)),
        "coverage@3": pytest.approx(0.3),
        "valid_item_rate": pytest.approx(4 / 6),
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda: evaluate_scores(np.zeros(5), np.array([0])),  # 1-D scores
        lambda: evaluate_scores(np.zeros((2, 5)), np.array([0])),  # wrong number of targets
        lambda: evaluate_scores(np.zeros((1, 5)), np.array([5])),  # target outside the catalog
        lambda: evaluate_scores(np.zeros((1, 5)), np.array([0.0])),  # float targets
        lambda: evaluate_scores(np.array([[0.0, np.nan]]), np.array([0])),  # NaN score
        lambda: evaluate_scores(np.zeros((1, 5)), np.array([0]), ks=()),
        lambda: evaluate_scores(np.zeros((1, 5)), np.array([0]), ks=(0,)),
        lambda: evaluate_scores(np.zeros((1, 5)), np.array([0]), exclude=[np.array([7])]),
        lambda: evaluate_scores(np.zeros((2, 5)), np.array([0, 1]), exclude=[np.array([1])]),
        lambda: evaluate_topk(np.zeros((1, 5), dtype=int), np.array([0]), ks=(10,)),  # k larger than list
        lambda: evaluate_topk(np.zeros(5, dtype=int), np.array([0])),
        lambda: evaluate_topk(np.zeros((1, 5)), np.array([0]), ks=(5,)),  # float item ids
        lambda: valid_item_rate(np.zeros((0, 3), dtype=int), 10),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.slow
def test_beauty_sized_evaluation_takes_seconds():
    """All 22,363 Beauty users x 12,101 items must rank in seconds (the benchmark relies on it)."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(22_363, 12_101, generator=gen)
    targets = torch.randint(0, 12_101, (22_363,), generator=gen)
    start = time.process_time()  # CPU time: wall time depends on whoever else shares the machine
    m = evaluate_scores(scores, targets, ks=(5, 10))
    assert time.process_time() - start < 15
    assert m["recall@10"] == pytest.approx(10 / 12_101, abs=1e-3)  # random scores: recall ~ K/N
