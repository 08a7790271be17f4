"""Pluggable image embeddings and their fusion with text embeddings.

Any image encoder fits: a callable ``paths -> (n, d) array`` or an object with ``.encode(paths)``.
:class:`CLIPImageEncoder` adapts a transformers ``CLIPModel`` (hub id or local folder). Fusion puts
modalities on an equal footing by L2-normalising each before concatenating or summing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from genrec.data.dataset import Catalog
from genrec.embed.encoder import l2_normalize
from genrec.errors import DataFormatError
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


@runtime_checkable
class ImageEncoder(Protocol):
    """Anything with ``encode(paths) -> np.ndarray`` of shape ``(len(paths), d)``."""

    def encode(self, paths: Sequence[str]) -> np.ndarray: ...


ImageEncoderLike = ImageEncoder | Callable[[Sequence[str]], np.ndarray]


class CLIPImageEncoder:
    """Image features from a transformers ``CLIPModel`` (``get_image_features``), batched, no grad.

    Pass ``model_name_or_path`` (hub id or local folder holding the model and its image processor),
    or an already built ``model`` and ``processor`` (any callable taking ``images=`` and returning
    ``pixel_values``, e.g. ``CLIPImageProcessor`` or ``CLIPProcessor``).
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        model: Any = None,
        processor: Any = None,
        device: str | None = None,
        batch_size: int = 32,
    ):
        import torch

        if model is None:
            if model_name_or_path is None:
                raise ValueError("CLIPImageEncoder needs model_name_or_path or a model")
            from transformers import CLIPModel

            model = CLIPModel.from_pretrained(model_name_or_path)
        if processor is None:
            if model_name_or_path is None:
                raise ValueError("CLIPImageEncoder needs a processor when given a model object")
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(model_name_or_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = batch_size

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for path in paths[start : start + self.batch_size]:
                try:
                    with Image.open(path) as img:
                        images.append(img.convert("RGB"))
                except OSError as exc:
                    raise DataFormatError(f"cannot read image: {exc}", path) from None
            pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixel_values)
            # transformers >= 5 returns a model output whose pooler_output is the projected feature.
            feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
            out.append(feats.float().cpu().numpy())
        return np.concatenate(out, axis=0)


def encode_images(paths: Sequence[str], encoder: ImageEncoderLike) -> np.ndarray:
    """Run any image encoder and check/normalise its output: float32, L2-normalised, ``(len(paths), d)``."""
    fn = encoder.encode if isinstance(encoder, ImageEncoder) else encoder
    if not callable(fn):
        raise TypeError(
            f"image encoder must be callable or have .encode(paths), got {type(encoder).__name__}"
        )
    emb = np.asarray(fn(list(paths)))
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise ValueError(f"image encoder returned shape {emb.shape}, expected ({len(paths)}, d)")
    return l2_normalize(emb)


def encode_item_images(catalog: Catalog, encoder: ImageEncoderLike, missing: str = "error") -> np.ndarray:
    """Image embeddings in catalog order. ``missing="zeros"`` gives items without an image a zero row."""
    if missing not in ("error", "zeros"):
        raise ValueError(f"missing must be 'error' or 'zeros', got {missing!r}")
    have = [i for i, item in enumerate(catalog) if item.image]
    if len(have) < len(catalog):
        absent = next(item.id for item in catalog if not item.image)
        if missing == "error":
            raise DataFormatError(
                f"{len(catalog) - len(have)} items have no image (first: {absent!r}); pass missing='zeros'",
                catalog.source,
            )
        logger.warning("%d items have no image; they get zero image embeddings", len(catalog) - len(have))
    for i in have:
        if not Path(catalog[i].image).is_file():
            raise DataFormatError(f"image of item {catalog[i].id!r} not found", catalog[i].image)
    emb = encode_images([catalog[i].image for i in have], encoder)
    full = np.zeros((len(catalog), emb.shape[1]), dtype=np.float32)
    full[have] = emb
    return full


def fuse_embeddings(
    embeddings: Sequence[np.ndarray], method: str = "concat", weights: Sequence[float] | None = None
) -> np.ndarray:
    """Fuse per-item embeddings of several modalities into one L2-normalised matrix.

    Each input is L2-normalised first so no modality dominates by scale. ``concat`` scales block ``i``
    by ``sqrt(w_i)`` (so fused dot products are the weighted mean of per-modality cosines) and works
    for any dimensions; ``sum`` is the weighted sum and needs equal dimensions (e.g. CLIP text+image).
    """
    if len(embeddings) == 0:
        raise ValueError("fuse_embeddings needs at least one embedding matrix")
    mats = [np.asarray(e) for e in embeddings]
    for i, m in enumerate(mats):
        if m.ndim != 2:
            raise ValueError(f"embedding {i} must be 2-D (n_items, d), got shape {m.shape}")
        if m.shape[0] != mats[0].shape[0]:
            raise ValueError(f"embedding {i} has {m.shape[0]} rows but embedding 0 has {mats[0].shape[0]}")
    w = np.ones(len(mats)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(mats),):
        raise ValueError(f"got {w.size} weights for {len(mats)} embeddings")
    if (w < 0).any() or w.sum() == 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {list(w)}")
    mats = [l2_normalize(m) for m in mats]
    if method == "concat":
        fused = np.concatenate([np.sqrt(wi) * m for wi, m in zip(w, mats)], axis=1)
    elif method == "sum":
        dims = [m.shape[1] for m in mats]
        if len(set(dims)) != 1:
            raise ValueError(f"method='sum' needs equal dimensions, got {dims}; use method='concat'")
        fused = sum(wi * m for wi, m in zip(w, mats))
    else:
        raise ValueError(f"method must be 'concat' or 'sum', got {method!r}")
    return l2_normalize(fused)
