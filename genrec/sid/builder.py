"""``build_semantic_ids``: embeddings in, unique per-item semantic IDs (with diagnostics) out."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from genrec.data.dataset import Catalog
from genrec.sid.collisions import balanced_last_level as _balance
from genrec.sid.collisions import dedup_index
from genrec.sid.diagnostics import category_purity, code_diagnostics, dedup_distribution, item_labels
from genrec.sid.quantizer import Quantizer, ResidualQuantizer
from genrec.sid.rqkmeans import ResidualKMeans, RQKMeansConfig
from genrec.sid.rqvae import RQVAE, RQVAEConfig
from genrec.sid.semantic_ids import SemanticIDs
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
    the IDs can later be checked against the catalog they are loaded with; a catalog with categories
    or genres also adds their purity per level to the diagnostics. For image, fused, per-modality and
    behaviour-aligned IDs see :func:`genrec.sid.multimodal.build_multimodal_semantic_ids`.
    """
    x = check_embeddings(embeddings)
    item_ids = resolve_item_ids(catalog, item_ids, len(x))
    start = time.perf_counter()
    quantizer, config = fit_quantizer(x, method, levels, codebook_size, seed, show_progress, method_kwargs)
    build_config = {
        **dataclasses.asdict(config),
        "method": method,
        "balanced_last_level": balanced_last_level,
    }
    labels = item_labels(catalog) if catalog is not None else None
    return assemble_semantic_ids(
        quantizer, x, time.perf_counter() - start, build_config, balanced_last_level, item_ids, labels
    )


def check_embeddings(embeddings: np.ndarray, name: str = "embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty (n_items, d) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf")
    return x


def resolve_item_ids(catalog: Catalog | None, item_ids: list[str] | None, n: int) -> list[str] | None:
    if catalog is not None:
        if item_ids is not None:
            raise ValueError("pass catalog or item_ids, not both")
        item_ids = catalog.ids
    if item_ids is not None and len(item_ids) != n:
        raise ValueError(f"{len(item_ids)} item ids but {n} embeddings")
    return item_ids


def fit_quantizer(
    x: np.ndarray,
    method: str,
    levels: int,
    codebook_size: int | list[int],
    seed: int,
    show_progress: bool,
    method_kwargs: dict[str, Any],
) -> tuple[ResidualQuantizer, Any]:
    """Fit one residual quantizer of ``method``; returns it and the method's config."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    quantizer_cls, config_cls = METHODS[method]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(method_kwargs) - known
    if unknown:
        raise TypeError(f"unknown option(s) for {method}: {sorted(unknown)}; known: {sorted(known)}")
    config = config_cls(levels=levels, codebook_size=codebook_size, seed=seed, **method_kwargs)
    return quantizer_cls.fit(x, config, show_progress=show_progress), config


def assemble_semantic_ids(
    quantizer: Quantizer,
    x: np.ndarray,
    fit_seconds: float,
    build_config: dict[str, Any],
    balanced_last_level: bool = False,
    item_ids: list[str] | None = None,
    labels: np.ndarray | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> SemanticIDs:
    """Encode ``x`` with a fitted quantizer, de-duplicate, and attach the diagnostics (with category
    purity per level prefix when ``labels`` are given)."""
    semantic, last_residual = quantizer.encode(x, return_last_residual=True)
    sizes = quantizer.codebook_sizes
    diagnostics = {"fit_seconds": fit_seconds, **(diagnostics or {})}
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
    if labels is not None:
        diagnostics["category_purity"] = [
            category_purity(semantic[:, : level + 1], labels) for level in range(semantic.shape[1])
        ]
    dedup = dedup_index(semantic)
    diagnostics["dedup_distribution"] = dedup_distribution(dedup)
    codes = np.concatenate([semantic, dedup[:, None]], axis=1)
    method = build_config["method"]
    logger.info(
        "%s semantic IDs: collision rate %.4f, largest group %d, fit %.1fs",
        method,
        diagnostics["collision_rate"],
        diagnostics["largest_group"],
        fit_seconds,
    )
    return SemanticIDs(
        codes,
        [*sizes, int(dedup.max()) + 1],
        item_ids=item_ids,
        method=method,
        quantizer=quantizer,
        diagnostics=diagnostics,
        build_config=build_config,
    )
