"""``build_semantic_ids``: embeddings in, unique per-item semantic IDs (with diagnostics) out."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.dataset import Catalog
from genrec.sid.collisions import balanced_last_level as _balance
from genrec.sid.collisions import dedup_index
from genrec.sid.diagnostics import code_diagnostics, dedup_distribution
from genrec.sid.rqkmeans import ResidualKMeans, RQKMeansConfig
from genrec.sid.rqvae import RQVAE, RQVAEConfig
from genrec.sid.semantic_ids import CONFIG_NAME, SemanticIDs
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

METHODS = {"rqkmeans": (ResidualKMeans, RQKMeansConfig), "rqvae": (RQVAE, RQVAEConfig)}


def build_semantic_ids(
    embeddings: np.ndarray,
    method: str = "rqkmeans",
    levels: int = 3,
    codebook_size: int | list[int] = 256,
    balanced_last_level: bool = False,
    seed: int = 0,
    catalog: Catalog | None = None,
    item_ids: list[str] | None = None,
    show_progress: bool = True,
    **method_kwargs: Any,
) -> SemanticIDs:
    """Fit a residual quantizer on ``embeddings`` ``(n_items, d)`` and return unique semantic IDs.

    ``method_kwargs`` go to the method's config (:class:`RQKMeansConfig`: ``niter``, ``backend``;
    :class:`RQVAEConfig`: ``epochs``, ``lr``, ``batch_size``, ``beta``, ``latent_dim``...). The
    result has ``levels + 1`` code levels: the last one de-duplicates items whose semantic codes
    collide (TIGER). ``balanced_last_level`` first spreads colliding items over distinct last-level
    codes (see :mod:`genrec.sid.collisions` for the trade-off). Pass ``catalog`` (or ``item_ids``) so
    the IDs can later be checked against the catalog they are loaded with.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must be a non-empty (n_items, d) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    if catalog is not None:
        if item_ids is not None:
            raise ValueError("pass catalog or item_ids, not both")
        item_ids = catalog.ids
    if item_ids is not None and len(item_ids) != len(x):
        raise ValueError(f"{len(item_ids)} item ids but {len(x)} embeddings")
    quantizer_cls, config_cls = METHODS[method]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(method_kwargs) - known
    if unknown:
        raise TypeError(f"unknown option(s) for {method}: {sorted(unknown)}; known: {sorted(known)}")
    config = config_cls(levels=levels, codebook_size=codebook_size, seed=seed, **method_kwargs)

    start = time.perf_counter()
    quantizer = quantizer_cls.fit(x, config, show_progress=show_progress)
    fit_seconds = time.perf_counter() - start
    semantic, last_residual = quantizer.encode(x, return_last_residual=True)
    sizes = quantizer.codebook_sizes
    diagnostics: dict[str, Any] = {"fit_seconds": fit_seconds}
    if isinstance(quantizer, RQVAE) and quantizer.history:
        last = quantizer.history[-1]
        diagnostics["training"] = {
            "epochs": len(quantizer.history),
            "kept_epoch": quantizer.kept_epoch,
            "final_recon": last["recon"],
            "final_quant": last["quant"],
        }
    if balanced_last_level:
        nearest_diag = code_diagnostics(semantic, sizes)
        balanced = _balance(semantic, last_residual, quantizer.codebooks[-1])
        moved = balanced[:, -1] != semantic[:, -1]
        diagnostics["before_balancing"] = nearest_diag
        diagnostics["balanced_moved_items"] = int(moved.sum())
        semantic = balanced
    diagnostics.update(code_diagnostics(semantic, sizes))
    dedup = dedup_index(semantic)
    diagnostics["dedup_distribution"] = dedup_distribution(dedup)
    codes = np.concatenate([semantic, dedup[:, None]], axis=1)
    logger.info(
        "%s semantic IDs: collision rate %.4f, largest group %d, fit %.1fs",
        method,
        diagnostics["collision_rate"],
        diagnostics["largest_group"],
        fit_seconds,
    )
    build_config = {
        **dataclasses.asdict(config),
        "method": method,
        "balanced_last_level": balanced_last_level,
    }
    return SemanticIDs(
        codes,
        [*sizes, int(dedup.max()) + 1],
        item_ids=item_ids,
        method=method,
        quantizer=quantizer,
        diagnostics=diagnostics,
        build_config=build_config,
    )


def load_or_build_semantic_ids(
    catalog: Catalog,
    folder: str | Path,
    embed_model: str | None = None,
    **build_kwargs: Any,
) -> SemanticIDs:
    """Semantic IDs saved in ``folder`` (checked against ``catalog``); built from item-text embeddings
    and saved there on first use. ``build_kwargs`` go to :func:`build_semantic_ids`."""
    from genrec.embed import encode_items

    folder = Path(folder)
    if (folder / CONFIG_NAME).is_file():
        return SemanticIDs.from_pretrained(folder, catalog=catalog)
    sid = build_semantic_ids(encode_items(catalog, model=embed_model), catalog=catalog, **build_kwargs)
    sid.save_pretrained(folder)
    return sid
