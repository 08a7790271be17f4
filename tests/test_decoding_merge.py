"""merge_beams: the union of several channels' beams, ranked by summed beam and item-head scores."""

from __future__ import annotations

import pytest
import torch

from genrec.decoding import merge_beams


def test_two_channels_known_answer():
    # channel 0 found items 3, 1 (beam log-probs -1, -2); channel 1 found 1, 5 (-0.5, -3)
    items = [torch.tensor([[3, 1]]), torch.tensor([[1, 5]])]
    beams = [torch.tensor([[-1.0, -2.0]]), torch.tensor([[-0.5, -3.0]])]
    top, score = merge_beams(items, beams, k=3)
    # item 3: -1 + channel 1's floor -3 = -4; item 1: -2 + -0.5 = -2.5; item 5: floor -2 + -3 = -5
    assert top.tolist() == [[1, 3, 5]]
    torch.testing.assert_close(score, torch.tensor([[-2.5, -4.0, -5.0]]))
    # with item heads over a 6-item catalog, weight 2
    heads = [torch.log_softmax(torch.arange(6.0), 0)[None], torch.log_softmax(-torch.arange(6.0), 0)[None]]
    top, score = merge_beams(items, beams, heads, item_weight=2.0, k=3)
    expected = {i: s + 2 * (heads[0][0, i] + heads[1][0, i]) for i, s in ((3, -4.0), (1, -2.5), (5, -5.0))}
    ranked = sorted(expected, key=lambda i: -expected[i])
    assert top.tolist() == [ranked]
    torch.testing.assert_close(score[0], torch.stack([expected[i] for i in ranked]))


def test_one_channel_is_its_beam_reranked():
    torch.manual_seed(0)
    items = torch.stack([torch.randperm(50)[:8] for _ in range(4)])
    beam = -torch.rand(4, 8).cumsum(1)  # best first, as a search returns it
    top, score = merge_beams([items], [beam], k=5)
    assert torch.equal(top, items[:, :5]) and torch.equal(score, beam[:, :5])
    head = torch.log_softmax(torch.randn(4, 50), 1)
    top, score = merge_beams([items], [beam], [head], item_weight=0.5, k=8)
    fused = beam + 0.5 * head.gather(1, items)
    order = fused.argsort(1, descending=True)
    assert torch.equal(top, items.gather(1, order))
    torch.testing.assert_close(score, fused.gather(1, order))


def test_an_item_both_channels_found_appears_once_and_ties_keep_channel_order():
    items = [torch.tensor([[7, 2, 4]]), torch.tensor([[2, 9, 7]])]
    flat = [torch.zeros(1, 3), torch.zeros(1, 3)]  # every score ties
    top, _ = merge_beams(items, flat, k=3)
    assert top.tolist() == [[7, 2, 4]]  # no repeat; the union's order: channel 0 first
    top, _ = merge_beams(items, [torch.tensor([[-1.0, -1.0, -2.0]]), torch.tensor([[-1.0, -2.0, -5.0]])], k=3)
    # 2: -1 + -1 = -2 beats 7: -1 + -5 = -6, 4: -2 + floor -5 = -7, 9: floor -2 + -2 = -4
    assert top.tolist() == [[2, 9, 7]]


def test_bad_input_is_named():
    items, beams = [torch.tensor([[1, 2]])], [torch.tensor([[0.0, -1.0]])]
    with pytest.raises(ValueError, match="one beam_scores per"):
        merge_beams(items, [], k=1)
    with pytest.raises(ValueError, match="channel 0"):
        merge_beams(items, [torch.zeros(1, 3)], k=1)
    with pytest.raises(ValueError, match="exceeds"):
        merge_beams(items, beams, k=3)
    with pytest.raises(ValueError, match="item_log_probs per channel"):
        merge_beams(items, beams, [torch.zeros(1, 5)] * 2, k=1)
