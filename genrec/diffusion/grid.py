"""Sample grids: each row shows a user's recent history images beside the thumbnails made for them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from genrec.utils.io import atomic_write

Row = tuple[Sequence[np.ndarray], Sequence[np.ndarray]]


def save_grid(
    rows: Sequence[Row],
    path: str | Path,
    titles: tuple[str, str] = ("history", "generated"),
    labels: Sequence[str] | None = None,
    pad: int = 4,
) -> Path:
    """Write a PNG grid: per row, left images | gap | right images (uint8 HxWx3 arrays), and an
    optional text label under each row."""
    cells = [img for left, right in rows for img in (*left, *right)]
    if not cells:
        raise ValueError("nothing to draw: every row is empty")
    h, w = cells[0].shape[:2]
    n_left = max(len(left) for left, _ in rows)
    n_right = max(len(right) for _, right in rows)
    header, gap = 14, 3 * pad
    label_h = 12 if labels else 0
    width = pad + n_left * (w + pad) + (gap if n_left else 0) + n_right * (w + pad)
    height = header + pad + len(rows) * (h + pad + label_h)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    right_x = pad + n_left * (w + pad) + (gap if n_left else 0)
    if n_left:
        draw.text((pad, 2), titles[0], fill="black")
    draw.text((right_x, 2), titles[1], fill="black")
    for r, (left, right) in enumerate(rows):
        y = header + pad + r * (h + pad + label_h)
        if labels:
            draw.text((pad, y + h + 1), labels[r], fill="black")
        for c, img in enumerate(left):
            canvas.paste(Image.fromarray(np.asarray(img, dtype=np.uint8)), (pad + c * (w + pad), y))
        for c, img in enumerate(right):
            canvas.paste(Image.fromarray(np.asarray(img, dtype=np.uint8)), (right_x + c * (w + pad), y))
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        canvas.save(fh, format="PNG")
    return path
