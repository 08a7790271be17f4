"""Cold-start admission: known-answer merges, left-padding-safe first-token log-probabilities, grid choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genrec.decoding.cold_start import (
    ColdAdmission,
    admit_cold_items,
    choose_admission,
    cold_scores,
    first_token_log_probs,
)

TOP = np.array([[1, 2, 3]])
SCORES = np.array([[-1.0, -2.0, -3.0]])
COLD = np.array([10, 11])


def test_cold_items_take_the_places_they_outscore_up_to_max_slots():
    cold = np.array([[-1.5, -2.5]])
    assert admit_cold_items(TOP, SCORES, COLD, cold, max_slots=0).tolist() == [[1, 2, 3]]
    assert admit_cold_items(TOP, SCORES, COLD, cold, max_slots=1).tolist() == [[1, 10, 2]]
    assert admit_cold_items(TOP, SCORES, COLD, cold, max_slots=2).tolist() == [[1, 10, 2]]
    high = np.array([[0.0, -0.5]])
    assert admit_cold_items(TOP, SCORES, COLD, high, max_slots=2).tolist() == [[10, 11, 1]]
    assert admit_cold_items(TOP, SCORES, COLD, high, max_slots=1).tolist() == [[10, 1, 2]]
    low = np.array([[-9.0, -9.5]])
    assert admit_cold_items(TOP, SCORES, COLD, low, max_slots=2).tolist() == [[1, 2, 3]]


def test_cold_items_in_the_history_or_already_listed_are_not_added_again():
    high = np.array([[0.0, -0.5]])
    assert admit_cold_items(TOP, SCORES, COLD, high, 1, exclude=[np.array([10])]).tolist() == [[11, 1, 2]]
    listed = np.array([[10, 2, 3]])
    assert admit_cold_items(listed, SCORES, COLD, high, 1).tolist() == [[11, 10, 2]]  # 10 once


def test_cold_scores_add_weighted_similarity_and_bonus():
    log_probs, sims = np.array([[-2.0, -3.0]]), np.array([[0.5, 0.1]])
    scores = cold_scores(log_probs, sims, ColdAdmission(bonus=1.0, similarity_weight=2.0))
    np.testing.assert_allclose(scores, [[0.0, -1.8]])
    with pytest.raises(ValueError):
        ColdAdmission(max_slots=-1)
    # an item head's whole-item log-probabilities join at their weight, and are required when weighed
    head = np.array([[-1.0, -4.0]])
    with_head = ColdAdmission(bonus=1.0, similarity_weight=2.0, item_weight=0.5)
    np.testing.assert_allclose(cold_scores(log_probs, sims, with_head, head), [[-0.5, -3.8]])
    with pytest.raises(ValueError, match="item head"):
        cold_scores(log_probs, sims, with_head)


def test_first_token_log_probs_ignore_left_padding():
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
        )
    )
    short, long = [3, 4], [5, 6, 7, 8]
    ids = torch.tensor([[0, 0, *short], long])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    batch = first_token_log_probs(model, ids, mask)
    alone = first_token_log_probs(model, torch.tensor([short]), torch.ones(1, 2, dtype=torch.long))
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.exp().sum(-1), torch.ones(2))


def test_choose_admission_maximises_the_objective_within_the_guard():
    def metrics(a: ColdAdmission) -> dict[str, float]:  # more slots and bonus: more cold recall, lower ndcg
        cold = 0.0 if a.max_slots == 0 else 0.1 * a.max_slots + 0.01 * a.bonus + 0.001 * a.similarity_weight
        return {"cold": cold, "ndcg": 1.0 - 0.01 * a.max_slots * (a.bonus + 5)}

    grid_axes = ((-4.0, -2.0), (0.0, 5.0), (1, 2))
    best, best_metrics, grid = choose_admission(metrics, "cold", "ndcg", 0.02, *grid_axes)
    # ndcg must stay >= .98: bonus -4 costs .01 per slot (allowed up to 2 slots), bonus -2 costs .03 per slot
    assert best == ColdAdmission(-4.0, 5.0, 2) and best_metrics == metrics(best) and len(grid) == 1 + 8
    assert grid[0] == {
        "bonus": 0.0,
        "similarity_weight": 0.0,
        "max_slots": 0,
        "item_weight": 0.0,
        "cold": 0.0,
        "ndcg": 1.0,
    }
    # an item-weight axis multiplies the grid
    _, _, wider = choose_admission(metrics, "cold", "ndcg", 0.02, *grid_axes, item_weights=(0.0, 1.0))
    assert len(wider) == 1 + 16 and {g["item_weight"] for g in wider[1:]} == {0.0, 1.0}
    strict, _, _ = choose_admission(metrics, "cold", "ndcg", 0.0, (-4.0,), (0.0,), (1,))
    assert strict.max_slots == 0  # any loss is too much: admit nothing
    constant = {"cold": 0.0, "ndcg": 1.0}
    flat, _, _ = choose_admission(lambda a: constant, "cold", "ndcg", 0.5, (0.0,), (0.0,), (1,))
    assert flat.max_slots == 0  # no gain: ties go to admitting nothing


def test_choose_admission_with_a_target_takes_the_cheapest_point_reaching_it():
    def metrics(a: ColdAdmission) -> dict[str, float]:  # each slot: +.1 cold recall, -.01 ndcg
        return {"cold": 0.1 * a.max_slots, "ndcg": 1.0 - 0.01 * a.max_slots}

    axes = ((-4.0,), (0.0,), (1, 2, 3, 4))
    plain, _, _ = choose_admission(metrics, "cold", "ndcg", 0.05, *axes)
    assert plain.max_slots == 4  # no target: the most cold recall the tolerance allows
    cheap, cheap_metrics, _ = choose_admission(metrics, "cold", "ndcg", 0.05, *axes, target=0.15)
    assert cheap.max_slots == 2 and cheap_metrics == {"cold": 0.2, "ndcg": 0.98}
    reached, _, _ = choose_admission(metrics, "cold", "ndcg", 0.05, *axes, target=0.0)
    assert reached.max_slots == 0  # admitting nothing already reaches it
    # out of reach within the tolerance (3 slots at most): the plain rule
    far, _, _ = choose_admission(metrics, "cold", "ndcg", 0.03, *axes, target=0.9)
    assert far.max_slots == 3
