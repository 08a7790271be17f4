"""Item images and (history -> next item's image) training pairs for the thumbnail model.

Images are decoded once, up front, into a uint8 tensor: a missing or corrupted file is skipped
with a logged warning and counted (its item is never a target), so training never fails mid-epoch.
Users and items are held out for evaluation: held-out users contribute no training pairs, and
held-out items are never a training target (nor a VAE/evaluator training image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from genrec.data.dataset import Catalog, SequenceDataset
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


@dataclass
class ItemImages:
    """``pixels[i]`` is item ``indices[i]``'s image as uint8 ``(3, H, W)``; ``skipped`` lists failures."""

    indices: np.ndarray
    pixels: torch.Tensor
    skipped: dict[int, str] = field(default_factory=dict)
    num_items: int = 0

    def __post_init__(self) -> None:
        self.row_of = np.full(self.num_items, -1, dtype=np.int64)
        self.row_of[self.indices] = np.arange(len(self.indices))

    @property
    def has_image(self) -> np.ndarray:
        return self.row_of >= 0

    def to_float(self, rows: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        """Selected rows in [-1, 1] (the diffusion and VAE range)."""
        return self.pixels[rows].float().div(127.5).sub(1.0)


def load_image(path: str, size: int | tuple[int, int]) -> np.ndarray:
    """Decode by content (PIL sniffs the format, so a PNG named .jpg works), RGB, resized to ``size``.

    Posters are 2:3; they are squeezed to the square ``size`` rather than cropped, so the whole
    composition (title band, faces) stays in the thumbnail.
    """
    w, h = (size, size) if isinstance(size, int) else (size[1], size[0])
    with Image.open(path) as img:
        img.draft("RGB", (2 * w, 2 * h))  # JPEG: decode at a reduced scale, much faster for thumbnails
        img = ImageOps.exif_transpose(img).convert("RGB")
        img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_item_images(
    catalog: Catalog, size: int | tuple[int, int], indices: Sequence[int] | None = None, progress: bool = True
) -> ItemImages:
    """Decode the images of ``indices`` (default: every item that has one); failures are counted."""
    wanted = range(len(catalog)) if indices is None else indices
    ok, arrays, skipped = [], [], {}
    for i in tqdm(wanted, desc="decode images", disable=not progress, leave=False):
        path = catalog[int(i)].image
        if not path:
            continue
        try:
            arrays.append(load_image(path, size))
            ok.append(int(i))
        # PIL raises SyntaxError for some malformed PNG/GIF headers.
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            skipped[int(i)] = f"{path}: {err}"
            logger.warning("skipping image of item %r: %s (%s)", catalog[int(i)].id, path, err)
    if skipped:
        logger.warning(
            "%d of %d item images could not be read and were skipped", len(skipped), len(ok) + len(skipped)
        )
    hw = (size, size) if isinstance(size, int) else tuple(size)
    pixels = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, *hw, dtype=torch.uint8)
    return ItemImages(np.asarray(ok, dtype=np.int64), pixels, skipped, num_items=len(catalog))


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


class PairSampler:
    """Random (history before t -> item at t) pairs over training users' training positions.

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
    ):
        self.sequences = dataset.train_sequences()
        self.history_max_len = history_max_len
        test_user = holdout.user_mask(dataset.num_users)
        allowed = images.has_image & ~holdout.item_mask(dataset.num_items)
        users, positions = [], []
        for u, seq in enumerate(self.sequences):
            if test_user[u] or len(seq) < 2:
                continue
            t = np.arange(1, len(seq))
            t = t[allowed[seq[1:]]]
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
            histories.append(seq[max(0, t - self.history_max_len) : t])
            targets[k] = seq[t]
        return histories, targets

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
