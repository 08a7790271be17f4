"""A catalog users walk in steps of one (item t+1 follows item t): what tiny recommenders must learn."""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.model.compact import CompactConfig, CompactTrainingConfig
from genrec.sid import SemanticIDSpec

N_ITEMS = 48


def walk_dataset(users: int = 96, seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    catalog = Catalog([Item(str(i)) for i in range(N_ITEMS)])
    seqs = [(rng.integers(N_ITEMS) + np.arange(rng.integers(4, 9))) % N_ITEMS for _ in range(users)]
    return SequenceDataset("walk", catalog, [f"u{u}" for u in range(users)], seqs)


TINY_COMPACT = CompactConfig(
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_items=6, item_head_weight=1.0
)


def tiny_channels_config(out: Any, channels: list[dict[str, Any]], **fields: Any) -> CompactTrainingConfig:
    """A compact training config that learns the walk in a few seconds, with ``channels`` and ``fields``."""
    defaults: dict[str, Any] = dict(
        compact=TINY_COMPACT,
        # codes from co-occurrence alone (no text encoder needed): 4 x 4 codes + a collision digit
        sid=SemanticIDSpec(modalities=["behaviour"], levels=2, codebook_size=4, behaviour_dim=8),
        epochs=3,
        batch_size=32,
        learning_rate=2e-2,
        warmup_steps=0,
        eval_users=32,
        eval_beams=10,
        patience=100,
        num_threads=1,
    )
    return CompactTrainingConfig(output_dir=str(out), channels=channels, **{**defaults, **fields})
