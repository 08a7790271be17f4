"""Contrastive alignment shared by the image-encoder pretraining and the behaviour-aligned item embeddings.

Both pull matched pairs together against the other rows of the batch (CLIP's symmetric InfoNCE):
an item's image against its text, or an item against an item it co-occurs with in training sequences,
which is how UniSRec/VQ-Rec/MISSRec tie content representations to behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genrec.embed.encoder import l2_normalize
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``a`` and of ``b`` are a positive pair, every other row a negative.

    Rows are L2-normalised, logits are ``logit_scale * cos``; the loss is the mean of the a->b and
    b->a cross-entropies, as in CLIP.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"info_nce needs two (batch, d) tensors of one shape, got {a.shape} and {b.shape}")
    logits = logit_scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def cooccurrence_pairs(
    sequences: Sequence[np.ndarray], window: int = 1, exclude: np.ndarray | None = None
) -> np.ndarray:
    """``(m, 2)`` item pairs within ``window`` positions of each other (every occurrence, so by frequency).

    Pass the *training* sequences so validation/test targets never leak; ``exclude`` is a boolean mask
    of items (e.g. held-out cold items) that must not appear in any pair.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pairs = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for offset in range(1, min(window, len(seq) - 1) + 1):
            pairs.append(np.stack([seq[:-offset], seq[offset:]], axis=1))
    out = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    keep = out[:, 0] != out[:, 1]
    if exclude is not None:
        keep &= ~exclude[out[:, 0]] & ~exclude[out[:, 1]]
    return out[keep]


@dataclass
class BehaviourAlignConfig:
    """Training knobs of :func:`align_to_behaviour` (a linear map initialised to the identity)."""

    steps: int = 1000
    batch_size: int = 512
    lr: float = 1e-3
    temperature: float = 0.07  # initial; the logit scale is learned
    content_weight: float = 0.5  # keeps each projected item retrievable from its own content embedding
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"BehaviourAlignConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.lr <= 0 or self.content_weight < 0:
            raise ValueError("BehaviourAlignConfig: temperature and lr must be > 0, content_weight >= 0")


def align_to_behaviour(
    embeddings: np.ndarray,
    pairs: np.ndarray,
    config: BehaviourAlignConfig | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """A ``(d, d)`` projection under which co-occurring items are close: apply it with :func:`project`.

    The map acts on content embeddings, so a new (cold) item is projected from its content alone. The
    loss is InfoNCE over co-occurrence pairs plus ``content_weight`` times InfoNCE between each
    projected item and its own embedding, so behaviour reshapes the space without erasing content.
    """
    config = config or BehaviourAlignConfig()
    x = torch.from_numpy(l2_normalize(embeddings))
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty (m, 2) index array, got shape {pairs.shape}")
    if pairs.min() < 0 or pairs.max() >= len(x):
        raise ValueError(f"pairs index items outside 0..{len(x) - 1}")
    gen = torch.Generator().manual_seed(config.seed)
    weight = torch.nn.Parameter(torch.eye(x.shape[1]))
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / config.temperature))))
    opt = torch.optim.Adam([weight, log_scale], lr=config.lr)
    pair_t = torch.from_numpy(pairs)
    bar = tqdm(range(config.steps), desc="behaviour alignment", disable=not show_progress)
    for _ in bar:
        batch = pair_t[torch.randint(len(pair_t), (config.batch_size,), generator=gen)]
        left, right = x[batch[:, 0]] @ weight, x[batch[:, 1]] @ weight
        scale = log_scale.exp().clamp(max=100.0)
        loss = info_nce(left, right, scale)
        if config.content_weight:
            loss = loss + config.content_weight * info_nce(left, x[batch[:, 0]], scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    logger.info(
        "behaviour alignment: %d steps on %d pairs, final loss %.4f", config.steps, len(pairs), loss.item()
    )
    return weight.detach().numpy()


def project(embeddings: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Apply a projection from :func:`align_to_behaviour`; rows are L2-normalised (zero rows stay zero)."""
    return l2_normalize(np.asarray(embeddings, dtype=np.float32) @ projection)
