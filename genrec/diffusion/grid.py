"""Sample grids: per row, groups of images side by side (a user's history, then thumbnails made for them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from genrec.utils.io import atomic_write

Row = Sequence[Sequence[np.ndarray]]  # groups of uint8 HxWx3 images


def save_grid(
    rows: Sequence[Row],
    path: str | Path,
    titles: Sequence[str] = ("history", "generated"),
    labels: Sequence[str] | None = None,
    pad: int = 4,
) -> Path:
    """Write a PNG grid: per row, its groups of images separated by gaps, a title over each group
    column, and an optional text label under each row."""
    cells = [img for row in rows for group in row for img in group]
    if not cells:
        raise ValueError("nothing to draw: every row is empty")
    h, w = cells[0].shape[:2]
    n_groups = max(len(row) for row in rows)
    widths = [max((len(row[g]) for row in rows if g < len(row)), default=0) for g in range(n_groups)]
    header, gap = 14, 3 * pad
    label_h = 12 if labels else 0
    starts, x = [], pad
    for n in widths:
        starts.append(x)
        x += n * (w + pad) + (gap if n else 0)
    width = max(s + n * (w + pad) for s, n in zip(starts, widths))
    canvas = Image.new("RGB", (width, header + pad + len(rows) * (h + pad + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for g, title in enumerate(titles[:n_groups]):
        if widths[g]:
            draw.text((starts[g], 2), title, fill="black")
    for r, row in enumerate(rows):
        y = header + pad + r * (h + pad + label_h)
        if labels:
            draw.text((pad, y + h + 1), labels[r], fill="black")
        for g, group in enumerate(row):
            for c, img in enumerate(group):
                canvas.paste(Image.fromarray(np.asarray(img, dtype=np.uint8)), (starts[g] + c * (w + pad), y))
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        canvas.save(fh, format="PNG")
    return path
