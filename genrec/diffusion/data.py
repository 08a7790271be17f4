"""Item images and (history -> next item's image) training pairs for the thumbnail model.

Images are decoded once, up front, into a uint8 tensor: a missing or corrupted file is skipped
with a logged warning and counted (its item is never a target), so training never fails mid-epoch.
Users and items are held out for evaluation: held-out users contribute no training pairs, and
held-out items are never a training target (nor a VAE/evaluator training image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.data.dataset import SequenceDataset
from genrec.embed.pixels import ItemImages, load_item_images

# Image decoding moved to genrec.embed.pixels (the image encoders use it too); re-exported here.
__all__ = ["ItemImages", "load_item_images", "HoldOut", "hold_out", "PairSampler"]


@dataclass
class HoldOut:
    """Which users and items are kept out of training."""

    test_users: np.ndarray  # user positions in the dataset
    test_items: np.ndarray  # item indices

    def user_mask(self, num_users: int) -> np.ndarray:
        mask = np.zeros(num_users, dtype=bool)
        mask[self.test_users] = True
        return mask

    def item_mask(self, num_items: int) -> np.ndarray:
        mask = np.zeros(num_items, dtype=bool)
        mask[self.test_items] = True
        return mask


def hold_out(dataset: SequenceDataset, user_fraction: float, item_fraction: float, seed: int) -> HoldOut:
    rng = np.random.default_rng(seed)
    n_u = int(round(dataset.num_users * user_fraction))
    n_i = int(round(dataset.num_items * item_fraction))
    return HoldOut(
        np.sort(rng.choice(dataset.num_users, n_u, replace=False)),
        np.sort(rng.choice(dataset.num_items, n_i, replace=False)),
    )


PAIR_TARGETS = ("next", "history")


class PairSampler:
    """Random (condition history -> target item) pairs over training users' training positions.

    ``target="next"``: the history before position t predicts the item at t (next-item pairs).
    ``target="history"``: the item at t is predicted from the user's *other* training items (leave one
    out within the history), so the image learns the taste the whole history shows; a user-only thumbnail
    is then judged against the very history it was given.

    ``target_in_history``: the share of pairs whose target re-enters its own condition, at a random one of
    the ``recent_slots`` most recent positions (where history tokens read it). A leave-one-out history
    says little about one poster, so a network trained on it alone learns to ignore the user; a history
    token that sometimes *is* the target (IP-Adapter's reconstruction signal) teaches attention to render
    what the history's items look like. Whether that beats leave-one-out, and what it costs in copies,
    is measured by ``bench.thumbnails_ml1m``.

    Positions come from ``dataset.train_sequences()`` (valid/test targets never leak); a pair is
    kept when its target has an image and is not a held-out item. Sampling is with replacement from
    a seeded generator whose state is checkpointed, so a resumed run draws the same stream.
    """

    def __init__(
        self,
        dataset: SequenceDataset,
        images: ItemImages,
        holdout: HoldOut,
        history_max_len: int = 50,
        seed: int = 0,
        target: str = "next",
        target_in_history: float = 0.0,
        recent_slots: int = 1,
    ):
        if target not in PAIR_TARGETS:
            raise ValueError(f"pair target must be one of {PAIR_TARGETS}, got {target!r}")
        if not 0.0 <= target_in_history <= 1.0:
            raise ValueError(f"target_in_history is a share in [0, 1], got {target_in_history}")
        if recent_slots < 1:
            raise ValueError(f"recent_slots must be >= 1, got {recent_slots}")
        self.sequences = dataset.train_sequences()
        self.history_max_len = history_max_len
        self.target = target
        self.target_in_history = target_in_history
        self.recent_slots = recent_slots
        test_user = holdout.user_mask(dataset.num_users)
        allowed = images.has_image & ~holdout.item_mask(dataset.num_items)
        users, positions = [], []
        for u, seq in enumerate(self.sequences):
            if test_user[u] or len(seq) < 2:
                continue
            t = np.arange(1 if target == "next" else 0, len(seq))
            t = t[allowed[seq[t]]]
            users.append(np.full(len(t), u, dtype=np.int64))
            positions.append(t)
        if not users:
            raise ValueError("no training pairs: every target is held out or lacks an image")
        self.users = np.concatenate(users)
        self.positions = np.concatenate(positions)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.users)

    def sample(self, batch_size: int) -> tuple[list[np.ndarray], np.ndarray]:
        """``(histories, target item indices)`` for ``batch_size`` random pairs."""
        rows = self.rng.integers(0, len(self.users), batch_size)
        histories, targets = [], np.empty(batch_size, dtype=np.int64)
        for k, r in enumerate(rows):
            seq, t = self.sequences[self.users[r]], self.positions[r]
            history = seq[:t] if self.target == "next" else np.delete(seq, t)
            history = history[-self.history_max_len :]
            if self.target_in_history and self.rng.random() < self.target_in_history:
                n = len(history)
                slot = self.rng.integers(max(0, n + 1 - self.recent_slots), n + 1)
                history = np.insert(history, slot, seq[t])
                history = history[-self.history_max_len :]
            histories.append(history)
            targets[k] = seq[t]
        return histories, targets

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
