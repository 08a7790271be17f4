"""Test-time top-K lists as JSONL, so anyone can score a model with their own evaluator.

One line per user, best item first, in the ids the dataset itself uses (not genrec's dense indices)::

    {"user": "17", "items": ["4203", "118", ...]}

For the P5/TIGER Amazon splits those are the integer ids of ``sequential_data.txt`` (the ASIN of an item
is in ``catalog[i].fields["asin"]``); for MovieLens the UserID / MovieID. The file is written atomically,
so a crashed run never leaves a truncated list behind that would silently score lower.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genrec.data.dataset import Catalog
from genrec.errors import DataFormatError
from genrec.utils.io import atomic_write
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


def save_predictions(
    path: str | Path,
    users: Sequence[str],
    topk_items: np.ndarray | torch.Tensor,
    catalog: Catalog,
) -> Path:
    """Write ``topk_items`` (U, K dense item indices, best first) for ``users`` as JSONL at ``path``.

    ``-1`` entries (the padding of short lists, see :func:`genrec.eval.evaluate_topk`) are left out, so a
    line may list fewer than K items; any other index outside the catalog raises ``ValueError``.
    """
    items = topk_items.cpu().numpy() if isinstance(topk_items, torch.Tensor) else np.asarray(topk_items)
    if items.ndim != 2:
        raise ValueError(f"topk_items must be a (num_users, K) matrix, got shape {items.shape}")
    if items.size and not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"topk_items must be integer item indices, got dtype {items.dtype}")
    if len(users) != len(items):
        raise ValueError(f"{len(users)} users but {len(items)} lists")
    if len(set(users)) != len(users):
        raise ValueError("users must be unique: one list per user")
    bad = (items < -1) | (items >= len(catalog))
    if bad.any():
        row = int(bad.any(axis=1).nonzero()[0][0])
        raise ValueError(f"list of user {users[row]!r} holds an index outside [0, {len(catalog)})")
    ids = catalog.ids
    path = Path(path)
    with atomic_write(path) as fh:
        for user, row in zip(users, items):
            fh.write(json.dumps({"user": user, "items": [ids[i] for i in row if i >= 0]}) + "\n")
    logger.info("wrote the top-%d lists of %d users to %s", items.shape[1], len(users), path)
    return path


def load_predictions(path: str | Path) -> dict[str, list[str]]:
    """Read a :func:`save_predictions` file back: user id -> item ids, best first, in file order."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"invalid JSON ({err.msg})", path, line_no) from None
            if not isinstance(record, dict) or set(record) != {"user", "items"}:
                raise DataFormatError('expected {"user": ..., "items": [...]}', path, line_no)
            user, items = record["user"], record["items"]
            if not isinstance(user, str) or not (
                isinstance(items, list) and all(isinstance(i, str) for i in items)
            ):
                raise DataFormatError("user must be a string and items a list of strings", path, line_no)
            if user in out:
                raise DataFormatError(f"duplicate user {user!r}", path, line_no)
            out[user] = items
    return out
