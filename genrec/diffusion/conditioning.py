"""Condition tokens for the thumbnail UNet: the user (a vector, and/or a set of history items) and an item.

The UNet's cross-attention reads ``num_user_tokens + history_tokens + num_item_tokens`` tokens:

- ``num_user_tokens`` project one user vector (the history mean, or an external encoder's vector);
- ``history_tokens`` read the user as a set, IP-Adapter style: one token per recent history item
  (most recent first), projected from the stored item table, so attention can pick the items that
  matter for an image instead of seeing only their mean. Empty slots of short histories are null tokens;
- ``num_item_tokens`` project the item vector (personalised variants of a given item).

A dropped condition
(classifier-free guidance, or simply no user/item given) is replaced by learned null tokens, so one
network serves the unconditional, user-only and user+item branches that guidance composes.

The conditioner also stores what turns a raw history into a vector without genrec around it: the
catalog ids and the item content-embedding table (a buffer, saved in its safetensors), so a saved
pipeline can map ``user_history=[item ids]`` to a user vector on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genrec.errors import CheckpointMismatchError, UnknownItemError

USER_ENCODERS = ("mean", "external")


def _projection(in_dim: int, hidden: int, num_tokens: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, num_tokens * width))


class ThumbnailConditioner(ModelMixin, ConfigMixin):
    """Projects user (and item) vectors to cross-attention tokens; holds the item table for lookups.

    ``user_encoder="mean"`` means user vectors are the mean of the stored item embeddings of the
    history (what :class:`genrec.users.MeanItemEncoder` computes), so the pipeline can encode
    histories itself; ``"external"`` means callers pass vectors from another encoder (SASRec, LLM).
    """

    @register_to_config
    def __init__(
        self,
        user_dim: int,
        cross_attention_dim: int,
        item_dim: int = 0,
        num_user_tokens: int = 2,
        num_item_tokens: int = 1,
        history_tokens: int = 0,
        hidden_dim: int = 256,
        user_encoder: str = "mean",
        history_max_len: int = 50,
        num_items: int = 0,
        table_dim: int = 0,
        catalog_ids: list[str] | None = None,
        catalog_fingerprint: str | None = None,
    ):
        super().__init__()
        if user_encoder not in USER_ENCODERS:
            raise ValueError(f"user_encoder must be one of {USER_ENCODERS}, got {user_encoder!r}")
        if catalog_ids is not None and len(catalog_ids) != num_items:
            raise ValueError(f"{len(catalog_ids)} catalog ids for num_items={num_items}")
        if num_user_tokens + history_tokens == 0:
            raise ValueError("the user needs num_user_tokens > 0 or history_tokens > 0")
        if history_tokens > 0 and table_dim == 0:
            raise ValueError("history_tokens read the stored item table: give num_items and table_dim")
        n_tokens = num_user_tokens + history_tokens
        if num_user_tokens > 0:
            self.user_proj = _projection(user_dim, hidden_dim, num_user_tokens, cross_attention_dim)
            self.null_user = nn.Parameter(torch.randn(num_user_tokens, cross_attention_dim) * 0.02)
        if history_tokens > 0:
            self.history_proj = _projection(table_dim, hidden_dim, 1, cross_attention_dim)
            self.null_history = nn.Parameter(torch.randn(history_tokens, cross_attention_dim) * 0.02)
        if item_dim > 0:
            self.item_proj = _projection(item_dim, hidden_dim, num_item_tokens, cross_attention_dim)
            self.null_item = nn.Parameter(torch.randn(num_item_tokens, cross_attention_dim) * 0.02)
            n_tokens += num_item_tokens
        self.slot_embedding = nn.Parameter(torch.randn(n_tokens, cross_attention_dim) * 0.02)
        self.norm = nn.LayerNorm(cross_attention_dim)
        if user_encoder == "mean" and num_user_tokens > 0 and table_dim != user_dim:
            raise ValueError(
                f"user_encoder='mean' needs table_dim == user_dim, got {table_dim} != {user_dim}"
            )
        self.register_buffer("item_embeddings", torch.zeros(num_items, table_dim))
        self._index = {item_id: i for i, item_id in enumerate(catalog_ids or [])}

    @property
    def num_tokens(self) -> int:
        return int(self.slot_embedding.shape[0])

    @property
    def uses_item(self) -> bool:
        return self.config.item_dim > 0

    @property
    def uses_user_vector(self) -> bool:
        return self.config.num_user_tokens > 0

    @property
    def uses_history(self) -> bool:
        return self.config.history_tokens > 0

    # -- lookups ---------------------------------------------------------------------------------
    def set_item_embeddings(self, table: np.ndarray | torch.Tensor) -> None:
        table = torch.as_tensor(np.asarray(table, dtype=np.float32))
        if tuple(table.shape) != tuple(self.item_embeddings.shape):
            raise CheckpointMismatchError(
                f"item table has shape {tuple(table.shape)}, "
                f"conditioner expects {tuple(self.item_embeddings.shape)}"
            )
        self.item_embeddings.copy_(table.to(self.item_embeddings.device))

    def indices_of(self, item_ids: Sequence[str]) -> torch.Tensor:
        if not self._index:
            raise UnknownItemError(
                item_ids[0] if item_ids else None, "this conditioner stores no catalog ids"
            )
        try:
            return torch.tensor([self._index[i] for i in item_ids], dtype=torch.long)
        except KeyError as err:
            raise UnknownItemError(err.args[0], "not in the catalog this pipeline was trained on") from None

    def mean_user_embedding(self, histories: Sequence[torch.Tensor]) -> torch.Tensor:
        """User vectors from histories of item indices, as :class:`genrec.users.MeanItemEncoder` does."""
        if self.config.user_encoder != "mean":
            raise ValueError(
                "this conditioner was trained on an external user encoder; pass user_embedding= "
                "(or user_encoder=) beside user_history="
            )
        device = self.item_embeddings.device
        vecs = [self.item_embeddings[h[-self.config.history_max_len :].to(device)].mean(0) for h in histories]
        return nn.functional.normalize(torch.stack(vecs), dim=-1)

    def history_index(self, histories: Sequence[Sequence[int] | np.ndarray | torch.Tensor]) -> torch.Tensor:
        """``(B, history_tokens)`` item indices for the set tokens, most recent first, -1 where empty."""
        k = self.config.history_tokens
        out = torch.full((len(histories), k), -1, dtype=torch.long)
        for row, history in enumerate(histories):
            recent = torch.as_tensor(np.asarray(history, dtype=np.int64)[-k:]).flip(0)
            out[row, : len(recent)] = recent
        return out

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self,
        user: torch.Tensor | None,
        item: torch.Tensor | None = None,
        drop_user: torch.Tensor | None = None,
        drop_item: torch.Tensor | None = None,
        batch_size: int | None = None,
        history: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, num_tokens, cross_attention_dim)``. ``history``: :meth:`history_index` rows; ``drop_*`` are
        boolean masks (True = null tokens; ``drop_user`` drops the user vector and the history set)."""
        cfg = self.config
        b = batch_size or next(t.shape[0] for t in (user, item, history) if t is not None)
        parts = []
        if self.uses_user_vector:
            parts.append(
                self._tokens("user", user, cfg.user_dim, self.user_proj, self.null_user, drop_user, b)
            )
        if self.uses_history:
            parts.append(self._history_tokens(history, drop_user, b))
        if self.uses_item:
            parts.append(
                self._tokens("item", item, cfg.item_dim, self.item_proj, self.null_item, drop_item, b)
            )
        return self.norm(torch.cat(parts, dim=1) + self.slot_embedding)

    def _tokens(
        self,
        name: str,
        x: torch.Tensor | None,
        dim: int,
        proj: torch.nn.Module,
        null: torch.Tensor,
        drop: torch.Tensor | None,
        b: int,
    ) -> torch.Tensor:
        """One condition's tokens ``(b, n, d)``: projected, or learned null tokens where absent/dropped."""
        null = null.unsqueeze(0).expand(b, -1, -1)
        if x is None:
            return null
        if x.shape[-1] != dim:
            raise CheckpointMismatchError(
                f"{name} embedding has size {x.shape[-1]}, this conditioner was trained on {dim}"
            )
        tokens = proj(x.to(self.dtype)).view(b, null.shape[1], -1)
        return tokens if drop is None else torch.where(drop.view(b, 1, 1), null, tokens)

    def _history_tokens(
        self, history: torch.Tensor | None, drop: torch.Tensor | None, b: int
    ) -> torch.Tensor:
        """One token per history slot: the projected item embedding, or the slot's null token if empty."""
        null = self.null_history.unsqueeze(0).expand(b, -1, -1)
        if history is None:
            return null
        if history.shape[1] != self.config.history_tokens:
            raise ValueError(f"history has {history.shape[1]} slots, expected {self.config.history_tokens}")
        history = history.to(self.item_embeddings.device)
        empty = history < 0
        if drop is not None:
            empty = empty | drop.view(b, 1)
        tokens = self.history_proj(self.item_embeddings[history.clamp(min=0)].to(self.dtype))
        return torch.where(empty.unsqueeze(-1), null, tokens)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs
    ) -> ThumbnailConditioner:
        """As ``ModelMixin.from_pretrained``, but a saved tensor whose shape disagrees with the config
        raises :class:`CheckpointMismatchError` naming the file and tensor."""
        folder = Path(pretrained_model_name_or_path)
        subfolder = kwargs.get("subfolder")
        if subfolder:
            folder = folder / subfolder
        weights = folder / "diffusion_pytorch_model.safetensors"
        if weights.is_file():
            _check_shapes(cls, folder / "config.json", weights)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def _check_shapes(cls: type[ThumbnailConditioner], config_path: Path, weights: Path) -> None:
    from safetensors import safe_open

    config = json.loads(config_path.read_text(encoding="utf-8"))
    import inspect

    params = inspect.signature(cls.__init__).parameters
    init_kwargs = {k: v for k, v in config.items() if k in params and k != "self"}
    with torch.device("meta"):
        expected = cls(**init_kwargs).state_dict()
    with safe_open(str(weights), framework="pt") as fh:
        for name in fh.keys():
            saved = tuple(fh.get_slice(name).get_shape())
            want = tuple(expected[name].shape) if name in expected else None
            if want is not None and saved != want:
                raise CheckpointMismatchError(
                    f"{weights}: tensor {name!r} has shape {saved}, but {config_path.name} implies {want} "
                    "(condition sizes differ between the config and the saved weights)"
                )
