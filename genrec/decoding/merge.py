"""Merge the items of several beam searches into one ranked list (SID channels' OR rule, beam re-ranking)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def merge_beams(
    items: Sequence[torch.Tensor],
    beam_scores: Sequence[torch.Tensor],
    item_log_probs: Sequence[torch.Tensor] | None = None,
    item_weight: float = 1.0,
    k: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of the union of each channel's beam items: ``(items, scores)``, each ``(B, k)``, best first.

    Channel ``c`` found ``items[c]`` ``(B, n_c)`` with ``beam_scores[c]`` (its summed token
    log-probabilities). It scores every item of the union by its beam score, plus ``item_weight`` times
    ``item_log_probs[c]`` ``(B, num_items)`` (the channel's item head) when given. An item outside
    ``c``'s beam takes ``c``'s lowest beam score in that row: ``c``'s search ranked it no higher. An item's
    score is the sum over channels, so one channel reduces to re-ranking its own beam, and an item that
    several channels found outranks one that only one found at the same scores. Ties keep the union's order
    (channel 0's beam first).
    """
    if not items or len(items) != len(beam_scores):
        raise ValueError(f"need one beam_scores per items tensor, got {len(items)} and {len(beam_scores)}")
    if item_log_probs is not None and len(item_log_probs) != len(items):
        raise ValueError(f"need one item_log_probs per channel, got {len(item_log_probs)} for {len(items)}")
    for c, (top, score) in enumerate(zip(items, beam_scores)):
        if top.shape != score.shape or top.shape[0] != items[0].shape[0]:
            raise ValueError(f"channel {c}: items {tuple(top.shape)} and beam_scores {tuple(score.shape)}")
    union = torch.cat(list(items), dim=1)  # (B, M)
    same = union[:, :, None] == union[:, None, :]
    repeat = torch.tril(same, diagonal=-1).any(dim=2)  # equal to an earlier entry of its row
    distinct = int((~repeat).sum(dim=1).min()) if len(union) else k
    if distinct < k:
        raise ValueError(f"k={k} exceeds the {distinct} distinct items the beams found for some row")
    total = torch.zeros(union.shape, dtype=torch.float32, device=union.device)
    for c, (top, score) in enumerate(zip(items, beam_scores)):
        found = union[:, :, None] == top[:, None, :]  # (B, M, n_c); items are unique within a beam
        own = torch.where(found, score[:, None, :].float(), 0.0).sum(dim=2)
        total += torch.where(found.any(dim=2), own, score.float().min(dim=1, keepdim=True).values)
        if item_log_probs is not None and item_weight:
            total += item_weight * item_log_probs[c].float().gather(1, union)
    total = total.masked_fill(repeat, float("-inf"))
    order = total.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return union.gather(1, order), total.gather(1, order)
