"""Pluggable image embeddings, cached on disk, and their fusion with text embeddings.

Any image encoder fits: a callable ``paths -> (n, d) array`` or an object with ``.encode(paths)``.
:class:`CLIPImageEncoder` adapts a transformers CLIP/SigLIP model, :class:`OpenCLIPImageEncoder` an
open_clip checkpoint, and :func:`load_image_encoder` picks one from a path (including the encoder
pretrained here, :mod:`genrec.embed.image_pretrain`). Fusion puts modalities on an equal footing by
L2-normalising each before concatenating or summing them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from genrec.data.dataset import Catalog
from genrec.embed.encoder import default_cache_dir, encode_items, l2_normalize
from genrec.errors import DataFormatError
from genrec.utils.io import atomic_write
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

IMAGE_CACHE_FORMAT = "genrec-image-embeddings-v1"  # part of the cache file name: bump when the layout changes


@runtime_checkable
class ImageEncoder(Protocol):
    """Anything with ``encode(paths) -> np.ndarray`` of shape ``(len(paths), d)``."""

    def encode(self, paths: Sequence[str]) -> np.ndarray: ...


ImageEncoderLike = ImageEncoder | Callable[[Sequence[str]], np.ndarray]


def weights_digest(module: Any) -> str:
    """sha256 of a torch module's parameter names and values: names its weights for the embedding cache.

    A path would go stale when an encoder is retrained and saved over the same folder; the weights cannot.
    """
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def torch_device(device: str | None) -> Any:
    """``device``, else CUDA when available, else CPU."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def open_rgb(path: str) -> Any:
    """A decoded RGB PIL image; an unreadable file is a :class:`DataFormatError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataFormatError(f"cannot read image: {exc}", path) from None


class CLIPImageEncoder:
    """Image features from a transformers CLIP or SigLIP model (``get_image_features``), batched, no grad.

    Pass ``model_name_or_path`` (hub id or local folder holding the model and its image processor;
    ``CLIPModel``, ``SiglipModel`` or any model with ``get_image_features``), or an already built
    ``model`` and ``processor`` (any callable taking ``images=`` and returning ``pixel_values``).
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        model: Any = None,
        processor: Any = None,
        device: str | None = None,
        batch_size: int = 32,
    ):

        if model is None:
            if model_name_or_path is None:
                raise ValueError("CLIPImageEncoder needs model_name_or_path or a model")
            from transformers import AutoModel

            model = AutoModel.from_pretrained(model_name_or_path)
        if not hasattr(model, "get_image_features"):
            raise DataFormatError(
                f"{type(model).__name__} has no image tower (get_image_features); expected CLIP or SigLIP",
                model_name_or_path,
            )
        if processor is None:
            if model_name_or_path is None:
                raise ValueError("CLIPImageEncoder needs a processor when given a model object")
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(model_name_or_path)
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = batch_size
        settings = getattr(processor, "to_json_string", lambda: type(processor).__name__)()
        self.identity = f"{type(model).__name__}|{weights_digest(model)}|{_sha(settings)}"

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(paths), self.batch_size):
            images = [open_rgb(path) for path in paths[start : start + self.batch_size]]
            pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixel_values)
            # transformers >= 5 returns a model output whose pooler_output is the projected feature.
            feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
            out.append(feats.float().cpu().numpy())
        return np.concatenate(out, axis=0)


class OpenCLIPImageEncoder:
    """Image features from an open_clip checkpoint on disk (``pip install open_clip_torch``).

    ``model_name`` is the open_clip architecture (``"ViT-B-32"``), ``pretrained`` the checkpoint file.
    """

    def __init__(
        self, model_name: str, pretrained: str | Path, device: str | None = None, batch_size: int = 32
    ):

        try:
            import open_clip
        except ImportError:
            raise ImportError("open_clip is not installed: pip install open_clip_torch") from None
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"{pretrained}: open_clip checkpoint not found")
        self.device = torch_device(device)
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(pretrained), device=self.device
        )
        self.model = model.eval()
        self.batch_size = batch_size
        self.identity = f"open_clip|{model_name}|{weights_digest(model)}"

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(paths), self.batch_size):
            batch = [self.preprocess(open_rgb(path)) for path in paths[start : start + self.batch_size]]
            with torch.inference_mode():
                out.append(self.model.encode_image(torch.stack(batch).to(self.device)).float().cpu().numpy())
        return np.concatenate(out, axis=0)


def load_image_encoder(spec: str | Path, device: str | None = None, batch_size: int = 32) -> ImageEncoder:
    """An image encoder by path: a folder saved by the pretraining here (:mod:`genrec.embed.image_pretrain`),
    a transformers CLIP/SigLIP folder (or hub id), or ``open_clip:ARCH:CHECKPOINT`` for open_clip."""
    text = str(spec)
    if text.startswith("open_clip:"):
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(f"open_clip encoders are named open_clip:ARCH:CHECKPOINT, got {text!r}")
        return OpenCLIPImageEncoder(parts[1], parts[2], device=device, batch_size=batch_size)
    from genrec.embed.image_pretrain import ItemImageEncoder, is_item_image_encoder

    if is_item_image_encoder(text):
        return ItemImageEncoder.from_pretrained(text, device=device, batch_size=batch_size)
    return CLIPImageEncoder(text, device=device, batch_size=batch_size)


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


@dataclass
class ItemImageEmbeddings:
    """Image embeddings in catalog order, with what was skipped and how the cache did.

    Rows of items without a usable image are zero: fusion then leaves them their text alone
    (``text_fallback`` counts them), and per-modality semantic IDs give them one shared "no image" code.
    """

    embeddings: np.ndarray  # (n_items, d), float32, L2-normalised rows; zero where has_image is False
    has_image: np.ndarray  # (n_items,) bool
    missing: dict[int, str] = field(default_factory=dict)  # item index -> why (no image field, file absent)
    corrupt: dict[int, str] = field(default_factory=dict)  # item index -> decoding error
    cache_hits: int = 0
    encoded: int = 0

    @property
    def text_fallback(self) -> int:
        """Items that fall back to their text alone (no image, or one that could not be read)."""
        return int((~self.has_image).sum())


def _content_digest(path: str) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).digest()


def _image_cache_path(cache_dir: Path, identity: str) -> Path:
    return cache_dir / f"images-{_sha(IMAGE_CACHE_FORMAT + identity)[:32]}.safetensors"


def _load_image_cache(path: Path) -> dict[bytes, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.exists():
        return {}
    try:
        data = load_file(str(path))
        digests, emb = data["digests"], data["embeddings"]
    except (SafetensorError, KeyError, OSError) as exc:
        logger.warning("ignoring unreadable image-embedding cache %s (%s)", path, exc)
        return {}
    return {bytes(d): e for d, e in zip(digests, emb)}


def _save_image_cache(path: Path, cache: dict[bytes, np.ndarray], identity: str) -> None:
    from safetensors.numpy import save

    digests = np.frombuffer(b"".join(cache), dtype=np.uint8).reshape(len(cache), 32)
    blob = save(
        {"digests": digests, "embeddings": np.stack(list(cache.values())).astype(np.float32)},
        metadata={"model": identity, "format": IMAGE_CACHE_FORMAT},
    )
    with atomic_write(path, mode="wb") as fh:
        fh.write(blob)


def embed_item_images(
    catalog: Catalog,
    encoder: ImageEncoderLike,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    identity: str | None = None,
) -> ItemImageEmbeddings:
    """Embed every item's image, skipping and counting missing or corrupt files (never fatal).

    The cache (one file per encoder under ``cache_dir``, default :func:`default_cache_dir`) maps the
    sha256 of each image file's bytes to its embedding, so a second run reads it, an edited image is
    re-encoded alone, and a retrained encoder (new ``identity``) starts afresh. ``identity`` defaults to
    ``encoder.identity`` (the built-in encoders hash their weights); without one nothing is cached.
    """
    from PIL import Image

    identity = identity or getattr(encoder, "identity", None)
    if use_cache and identity is None:
        logger.warning("image encoder %s has no identity; its embeddings are not cached", type(encoder))
        use_cache = False
    path = _image_cache_path(Path(cache_dir or default_cache_dir()), identity or "")
    cache = _load_image_cache(path) if use_cache else {}
    missing: dict[int, str] = {}
    corrupt: dict[int, str] = {}
    digest_of: dict[int, bytes] = {}
    todo: dict[bytes, str] = {}  # content digest -> a path to encode it from
    for i, item in enumerate(catalog):
        if not item.image:
            missing[i] = "no image"
            continue
        try:
            digest = _content_digest(item.image)
        except OSError as exc:
            missing[i] = f"{item.image}: {exc.strerror or exc}"
            continue
        if digest not in cache and digest not in todo:
            try:
                with Image.open(item.image) as img:
                    img.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                corrupt[i] = f"{item.image}: {exc}"
                continue
            todo[digest] = item.image
        digest_of[i] = digest
    hits = sum(d in cache for d in digest_of.values())
    if todo:
        new = encode_images(list(todo.values()), encoder)
        cache.update(zip(todo, new))
        if use_cache:
            _save_image_cache(path, cache, identity or "")
    if not digest_of:
        raise DataFormatError("no item has a readable image", catalog.source)
    dim = len(next(iter(cache.values())))
    emb = np.zeros((len(catalog), dim), dtype=np.float32)
    for i, digest in digest_of.items():
        emb[i] = cache[digest]
    has_image = np.zeros(len(catalog), dtype=bool)
    has_image[list(digest_of)] = True
    for kind, skipped in (("have no image", missing), ("have an unreadable image", corrupt)):
        if skipped:
            first = next(iter(skipped))
            logger.warning(
                "%d items %s and fall back to text alone (first: %r, %s)",
                len(skipped),
                kind,
                catalog[first].id,
                skipped[first],
            )
    logger.info("image embeddings: %d from cache, %d images encoded", hits, len(todo))
    return ItemImageEmbeddings(emb, has_image, missing, corrupt, cache_hits=hits, encoded=len(todo))


def encode_item_images(catalog: Catalog, encoder: ImageEncoderLike, missing: str = "error") -> np.ndarray:
    """Image embeddings in catalog order, uncached. ``missing="zeros"`` gives items without a usable
    image a zero row; ``"error"`` raises on the first such item. See :func:`embed_item_images`."""
    if missing not in ("error", "zeros"):
        raise ValueError(f"missing must be 'error' or 'zeros', got {missing!r}")
    result = embed_item_images(catalog, encoder, use_cache=False)
    skipped = {**result.missing, **result.corrupt}
    if skipped and missing == "error":
        first = min(skipped)
        raise DataFormatError(
            f"{len(skipped)} items have no usable image (first: {catalog[first].id!r}, {skipped[first]}); "
            "pass missing='zeros'",
            catalog.source,
        )
    return result.embeddings


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


MODALITIES = ("text", "image")


def encode_item_modalities(
    catalog: Catalog,
    modalities: Sequence[str],
    text_model: str | None = None,
    image_encoder: str | Path | ImageEncoderLike | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Per-modality item embeddings, both cached: ``"text"`` (sentence-transformers, default MiniLM) and
    ``"image"`` (an encoder or a path for :func:`load_image_encoder`). Items without a usable image get a
    zero image row, which multimodal semantic IDs read as "fall back to text"."""
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}")
    out: dict[str, np.ndarray] = {}
    for modality in modalities:
        if modality == "text":
            out[modality] = encode_items(catalog, model=text_model, cache_dir=cache_dir)
            continue
        if image_encoder is None:
            raise ValueError("modality 'image' needs an image encoder (a path or an encoder object)")
        if isinstance(image_encoder, (str, Path)):
            image_encoder = load_image_encoder(image_encoder)
        out[modality] = embed_item_images(catalog, image_encoder, cache_dir=cache_dir).embeddings
    return out
