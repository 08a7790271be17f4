"""A catalog users walk in steps of one (item t+1 follows item t): what tiny recommenders must learn."""

from __future__ import annotations

import numpy as np

from genrec.data.dataset import Catalog, Item, SequenceDataset

N_ITEMS = 48


def walk_dataset(users: int = 96, seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    catalog = Catalog([Item(str(i)) for i in range(N_ITEMS)])
    seqs = [(rng.integers(N_ITEMS) + np.arange(rng.integers(4, 9))) % N_ITEMS for _ in range(users)]
    return SequenceDataset("walk", catalog, [f"u{u}" for u in range(users)], seqs)
