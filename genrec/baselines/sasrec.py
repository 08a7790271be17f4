"""SASRec (Kang & McAuley, 2018): a causal self-attention transformer over item embeddings.

This is the strong variant used as the reference in recent generative-recommendation papers: it is
trained with a softmax cross-entropy over *all* items at every position (Klenitskiy & Vasilev, 2023,
"Turning Dross Into Gold Loss"), not the original one-negative binary loss. The output layer is tied
to the input item embeddings, so ``scores = user_state @ item_embeddings.T``.

Sequences are left-padded with index 0 (items are shifted by one inside the model) and position
embeddings count from the most recent item, so the latest item always sits at the same position
whatever the padded length of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from genrec.data.dataset import Catalog
from genrec.errors import CheckpointMismatchError, EmptyHistoryError
from genrec.utils.io import atomic_write, atomic_write_json, read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Fields that define the network (a checkpoint can only resume with the same); the rest only affect training.
ARCHITECTURE_FIELDS = ("hidden", "layers", "heads", "max_len")


@dataclass
class SASRecConfig:
    """Architecture and training knobs (a YAML recipe maps onto these names)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 200
    patience: int = 10  # evaluations without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs between validation passes
    seed: int = 0
    num_threads: int | None = None  # None: $GENREC_THREADS, else the idle CPUs (configure_threads)
    time_budget_s: float | None = None  # wall seconds per call; stops resumably before overrunning

    def __post_init__(self) -> None:
        for name in (
            "hidden",
            "layers",
            "heads",
            "max_len",
            "batch_size",
            "epochs",
            "patience",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"SASRecConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"SASRecConfig.time_budget_s must be > 0, got {self.time_budget_s}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, data: dict) -> SASRecConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, length, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, length, d)))


class Block(nn.Module):
    """Pre-norm transformer block; the point-wise feed-forward keeps SASRec's width (hidden -> hidden)."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.hidden)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.hidden)
        self.ffn = nn.Sequential(
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), keep)
        return x + self.ffn(self.ln2(x))


class SASRec(nn.Module):
    """Next-item model over a catalog of ``num_items`` items (dense indices ``0..num_items-1``)."""

    def __init__(
        self, num_items: int, config: SASRecConfig | None = None, catalog_fingerprint: str | None = None
    ):
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.config = config or SASRecConfig()
        self.num_items = num_items
        self.catalog_fingerprint = catalog_fingerprint
        c = self.config
        self.item_emb = nn.Embedding(num_items + 1, c.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.hidden)
        self.emb_dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.hidden)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    @property
    def item_embeddings(self) -> torch.Tensor:
        """(num_items, hidden): the output layer, row ``i`` for catalog item ``i``."""
        return self.item_emb.weight[1:]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, hidden) for left-padded ``input_ids`` (B, L): item index + 1, 0 = padding."""
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.config.max_len}")
        real = input_ids > 0
        positions = torch.arange(length - 1, -1, -1, device=input_ids.device)  # 0 = most recent
        x = self.item_emb(input_ids) + self.pos_emb(positions)
        x = self.emb_dropout(x) * real.unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        # A query sees earlier real items; every position also sees itself so padded rows never
        # attend to nothing (which would give NaN). Padded outputs are never used.
        keep = (causal & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=input_ids.device)
        keep = keep.unsqueeze(1)
        for block in self.blocks:
            x = block(x, keep)
        return self.ln_f(x)

    # -- inference on histories ------------------------------------------------------------------
    def encode_histories(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Left-padded model input (U, L) from histories of item indices; the last ``max_len`` are kept."""
        if len(histories) == 0:
            raise ValueError("histories is empty: pass at least one user history")
        tails = []
        for u, h in enumerate(histories):
            h = np.asarray(h)
            if h.ndim != 1:
                raise ValueError(f"history {u} must be a 1-D array of item indices, got shape {h.shape}")
            if h.size == 0:
                raise EmptyHistoryError(f"history {u} is empty; SASRec needs at least one item")
            if not np.issubdtype(h.dtype, np.integer):
                raise ValueError(f"history {u} must hold integer item indices, got dtype {h.dtype}")
            if h.min() < 0 or h.max() >= self.num_items:
                raise ValueError(f"history {u} holds an item index outside [0, {self.num_items})")
            tails.append(h[-self.config.max_len :])
        length = max(len(t) for t in tails)
        out = np.zeros((len(tails), length), dtype=np.int64)
        for u, t in enumerate(tails):
            out[u, length - len(t) :] = t + 1
        return torch.from_numpy(out)

    @torch.no_grad()
    def user_states(self, histories: Sequence[np.ndarray], batch_size: int = 1024) -> torch.Tensor:
        """(U, hidden) state after each history's last item: the user vector for downstream encoders."""
        input_ids = self.encode_histories(histories)
        lengths = (input_ids > 0).sum(1)
        order = torch.argsort(lengths, descending=True)  # batch similar lengths: less padding
        was_training = self.training
        self.eval()
        try:
            states = torch.empty(len(histories), self.config.hidden)
            device = self.item_emb.weight.device
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = int(lengths[idx].max())
                states[idx] = self(input_ids[idx, -width:].to(device))[:, -1].float().cpu()
        finally:
            self.train(was_training)
        return states

    @torch.no_grad()
    def scores(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """(U, num_items) next-item scores (logits) for each history."""
        states = self.user_states(histories).to(self.item_emb.weight.device)
        return (states @ self.item_embeddings.T).cpu()

    def recommend(
        self, histories: Sequence[np.ndarray], k: int, exclude_history: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items (U, k) int64 and their scores (U, k) float32, best first."""
        if not 1 <= k <= self.num_items:
            raise ValueError(f"k must be in [1, {self.num_items}], got {k}")
        scores = self.scores(histories)
        if exclude_history:
            for u, h in enumerate(histories):
                scores[u, np.asarray(h, dtype=np.int64)] = -torch.inf
        top = scores.topk(k, dim=1)
        return top.indices.numpy(), top.values.numpy()

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """``config.json`` + ``model.safetensors``, each written atomically."""
        directory = Path(directory)
        meta = {
            "model_type": "sasrec",
            "num_items": self.num_items,
            "catalog_fingerprint": self.catalog_fingerprint,
            **asdict(self.config),
        }
        atomic_write_json(directory / CONFIG_NAME, meta)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(directory / WEIGHTS_NAME, mode="wb") as fh:
            fh.write(save(tensors, metadata={"format": "pt"}))

    @classmethod
    def from_pretrained(cls, directory: str | Path, catalog: Catalog | None = None) -> SASRec:
        """Load a saved model; with ``catalog``, refuse one trained on a different catalog."""
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path} not found: not a saved SASRec model")
        meta = read_json(cfg_path)
        if meta.get("model_type") != "sasrec":
            raise CheckpointMismatchError(
                f"{cfg_path}: model_type is {meta.get('model_type')!r}, not 'sasrec'"
            )
        fingerprint = meta.get("catalog_fingerprint")
        if catalog is not None:
            if len(catalog) != meta["num_items"] or (fingerprint and fingerprint != catalog.fingerprint()):
                raise CheckpointMismatchError(
                    f"{cfg_path}: trained on a catalog of {meta['num_items']} items "
                    f"(fingerprint {fingerprint}), "
                    f"got {len(catalog)} items (fingerprint {catalog.fingerprint()})"
                )
        model = cls(meta["num_items"], SASRecConfig.from_dict(meta), catalog_fingerprint=fingerprint)
        try:
            model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        except RuntimeError as err:
            raise CheckpointMismatchError(
                f"{directory / WEIGHTS_NAME}: weights do not match config: {err}"
            ) from err
        model.eval()
        return model
