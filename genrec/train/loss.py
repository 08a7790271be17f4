"""Next-token loss over the answer positions only, with an optional SID-restricted softmax.

Only positions with a label are projected through the output head (a recommendation answer is ~5 tokens
of a ~60-token example), and where the label is a SID token (or the end-of-answer token) the softmax runs
over the SID rows only: a few thousand logits instead of the whole vocabulary. Constrained decoding only
ever scores SID tokens at those positions, so the restricted softmax trains exactly what inference uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RestrictedVocab:
    """Token ids whose positions use the restricted softmax, with a vocab -> restricted-index lookup."""

    def __init__(self, token_ids: torch.Tensor | list[int], vocab_size: int):
        ids = torch.as_tensor(token_ids, dtype=torch.long).unique()
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"restricted token ids must lie in [0, {vocab_size})")
        self.ids = ids
        self.lookup = torch.full((vocab_size,), -1, dtype=torch.long)
        self.lookup[ids] = torch.arange(len(ids))

    def to(self, device: torch.device) -> RestrictedVocab:
        if self.ids.device != device:
            self.ids, self.lookup = self.ids.to(device), self.lookup.to(device)
        return self


def answer_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    restrict: RestrictedVocab | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and count over labelled positions; ``hidden`` (B, T, d), ``labels`` (B, T) unshifted."""
    hidden, labels = hidden[:, :-1], labels[:, 1:]
    mask = labels != -100
    h, y = hidden[mask], labels[mask]
    total = hidden.sum().float() * 0  # keeps the graph connected on an all-masked micro-batch
    if restrict is not None:
        restrict = restrict.to(y.device)
        local = restrict.lookup[y]
        inside = local >= 0
        if inside.any():
            w = weight[restrict.ids]
            logits = h[inside] @ w.T + (bias[restrict.ids] if bias is not None else 0)
            total = total + F.cross_entropy(logits.float(), local[inside], reduction="sum")
        h, y = h[~inside], y[~inside]
    if y.numel():
        logits = F.linear(h, weight, bias)
        total = total + F.cross_entropy(logits.float(), y, reduction="sum")
    return total, mask.sum()
