"""Item images decoded once into a uint8 tensor, for the models that train on pixels.

A missing or corrupted file is skipped with a logged warning and counted, so training never fails
mid-epoch. Used by the image-encoder pretraining and the thumbnail model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from genrec.data.dataset import Catalog
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
