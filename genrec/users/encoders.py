"""User encoders: a history of item indices -> one vector per user.

Conditioning models (the thumbnail diffusion model, soft prompts) read a user through this one
protocol, so the encoder is pluggable: content-embedding mean, a trained SASRec's state, or the
pooled hidden state of any causal LM on the user's history prompt. A trainable projector sits on
top of whichever encoder is used; the encoders themselves stay frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from genrec.errors import EmptyHistoryError, UnknownItemError

History = Sequence[int] | np.ndarray


@runtime_checkable
class UserEncoder(Protocol):
    """Maps histories (dense item indices, oldest first) to a float32 tensor ``(len(histories), dim)``."""

    dim: int

    def encode(self, histories: Sequence[History]) -> torch.Tensor: ...


def _check_history(history: History, num_items: int | None, position: int) -> np.ndarray:
    h = np.asarray(history, dtype=np.int64).reshape(-1)
    if h.size == 0:
        raise EmptyHistoryError(f"history {position} is empty; a user encoder needs at least one item")
    if num_items is not None and (h.min() < 0 or h.max() >= num_items):
        bad = int(h[(h < 0) | (h >= num_items)][0])
        raise UnknownItemError(bad, f"history {position}: index outside a catalog of {num_items} items")
    return h


class MeanItemEncoder:
    """Mean of the (L2-normalised) content embeddings of the last ``max_len`` history items.

    Needs no training and knows every catalog item, so a history of cold items still gets a vector.
    """

    def __init__(self, item_embeddings: np.ndarray | torch.Tensor, max_len: int = 50, normalize: bool = True):
        table = torch.as_tensor(np.asarray(item_embeddings, dtype=np.float32))
        if table.ndim != 2:
            raise ValueError(f"item_embeddings must be (n_items, dim), got shape {tuple(table.shape)}")
        self.table = table
        self.dim = int(table.shape[1])
        self.max_len = max_len
        self.normalize = normalize

    @property
    def num_items(self) -> int:
        return int(self.table.shape[0])

    @torch.no_grad()
    def encode(self, histories: Sequence[History]) -> torch.Tensor:
        out = torch.empty(len(histories), self.dim)
        for i, history in enumerate(histories):
            h = _check_history(history, self.num_items, i)[-self.max_len :]
            out[i] = self.table[torch.from_numpy(h)].mean(0)
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


class SASRecUserEncoder:
    """The user state of a trained :class:`genrec.baselines.SASRec` (last-position hidden state)."""

    def __init__(self, sasrec: Any, normalize: bool = True):
        self.sasrec = sasrec
        self.normalize = normalize
        probe = sasrec.user_states([np.array([0], dtype=np.int64)])
        self.dim = int(probe.shape[-1])

    @torch.no_grad()
    def encode(self, histories: Sequence[History]) -> torch.Tensor:
        num_items = getattr(self.sasrec, "num_items", None)
        hs = [_check_history(h, num_items, i) for i, h in enumerate(histories)]
        states = torch.as_tensor(self.sasrec.user_states(hs)).float().cpu()
        return torch.nn.functional.normalize(states, dim=-1) if self.normalize else states


def title_prompt(titles: Sequence[str], max_items: int = 20) -> Callable[[History], str]:
    """A plain prompt renderer: the user's most recent item titles, oldest first."""

    def render(history: History) -> str:
        recent = [titles[int(i)] for i in np.asarray(history).reshape(-1)[-max_items:]]
        return "The user interacted with, in order: " + "; ".join(recent) + "."

    return render


class CausalLMUserEncoder:
    """Mean-pooled last hidden states of a causal LM over the user's rendered history prompt.

    Works with any Hugging Face causal LM + tokenizer (e.g. a fine-tuned generative recommender:
    pass ``recommender.model``/``recommender.tokenizer`` or use :meth:`from_recommender`).
    ``render`` turns a history of item indices into the prompt text the LM was trained on.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        render: Callable[[History], str],
        batch_size: int = 8,
        max_length: int = 512,
        normalize: bool = True,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.render = render
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        self.dim = int(model.config.hidden_size)
        if tokenizer.pad_token is None:
            # Mean pooling masks padding, so any token serves; EOS is always present.
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_recommender(
        cls, recommender: Any, render: Callable[[History], str], **kwargs
    ) -> CausalLMUserEncoder:
        return cls(recommender.model, recommender.tokenizer, render, **kwargs)

    @torch.no_grad()
    def encode(self, histories: Sequence[History]) -> torch.Tensor:
        prompts = [self.render(_check_history(h, None, i)) for i, h in enumerate(histories)]
        device = next(self.model.parameters()).device
        chunks = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(device)
            out = self.model(**batch, output_hidden_states=True)
            hidden = out.hidden_states[-1].float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            chunks.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu())
        states = torch.cat(chunks) if chunks else torch.empty(0, self.dim)
        return torch.nn.functional.normalize(states, dim=-1) if self.normalize else states
