"""Multimodal semantic IDs: early fusion, per-modality levels, and behaviour-aligned embeddings.

A layout is a list of *parts*. Each part quantizes a weighted, normalised concatenation of some
modalities (:func:`~genrec.embed.fuse_embeddings`) into some levels, optionally after a projection
trained on co-occurrence pairs (:func:`~genrec.embed.align_to_behaviour`):

- ``fused``: one part over every modality (early fusion);
- ``per_modality``: one part per modality, e.g. two text levels then one image level (MQL4GRec, MACRec).

The quantizer takes the per-modality embeddings concatenated (:meth:`MultimodalQuantizer.stack`), so
``SemanticIDs.encode_new`` gives cold items codes from their content alone. An item missing a modality
(a zero block, e.g. no poster) is quantized from the others in a fused part and gets that modality's
"absent" code (the codeword nearest zero) in a per-modality part.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrec.data.dataset import Catalog
from genrec.embed.contrastive import BehaviourAlignConfig, align_to_behaviour, project
from genrec.embed.image import fuse_embeddings
from genrec.sid.builder import assemble_semantic_ids, check_embeddings, fit_quantizer, resolve_item_ids
from genrec.sid.diagnostics import item_labels
from genrec.sid.quantizer import Quantizer, ResidualQuantizer, expand_sizes
from genrec.sid.semantic_ids import SemanticIDs
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

LAYOUTS = ("fused", "per_modality")


def _part_inputs(
    blocks: Mapping[str, np.ndarray],
    modalities: list[str],
    weights: list[float],
    projection: np.ndarray | None,
) -> np.ndarray:
    x = fuse_embeddings([blocks[m] for m in modalities], "concat", weights)
    return x if projection is None else project(x, projection)


@dataclass
class QuantizerPart:
    """Consecutive levels: a quantizer over the weighted fusion of ``modalities``, then ``projection``."""

    modalities: list[str]
    weights: list[float]
    quantizer: ResidualQuantizer
    projection: np.ndarray | None = None


class MultimodalQuantizer(Quantizer):
    """Parts side by side: the codes of part 1, then part 2, ... over one stacked input."""

    method = "multimodal"

    def __init__(self, modalities: list[str], dims: list[int], parts: list[QuantizerPart]):
        if len(modalities) != len(dims) or not parts:
            raise ValueError("MultimodalQuantizer needs one dim per modality and at least one part")
        for part in parts:
            unknown = set(part.modalities) - set(modalities)
            if unknown:
                raise ValueError(f"part uses unknown modalities {sorted(unknown)} (have {modalities})")
        self.modalities = list(modalities)
        self.dims = [int(d) for d in dims]
        self.parts = parts
        self.codebooks = [c for part in parts for c in part.quantizer.codebooks]

    @property
    def input_dim(self) -> int:
        return sum(self.dims)

    def stack(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per-modality embeddings concatenated in this quantizer's order: the input of ``encode``."""
        absent = [m for m in self.modalities if m not in embeddings]
        if absent:
            raise ValueError(
                f"missing embeddings for modalities {absent} (this quantizer uses {self.modalities})"
            )
        return np.concatenate([np.asarray(embeddings[m], dtype=np.float32) for m in self.modalities], axis=1)

    def split(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"expected stacked embeddings of shape (n, {self.input_dim}) "
                f"({' + '.join(f'{m}:{d}' for m, d in zip(self.modalities, self.dims))}), got {x.shape}"
            )
        bounds = np.cumsum([0, *self.dims])
        return {m: x[:, a:b] for m, a, b in zip(self.modalities, bounds[:-1], bounds[1:])}

    def encode(self, x: np.ndarray, return_last_residual: bool = False):
        blocks = self.split(x)
        codes, last = [], None
        for part in self.parts:
            inputs = _part_inputs(blocks, part.modalities, part.weights, part.projection)
            part_codes, last = part.quantizer.encode(inputs, return_last_residual=True)
            codes.append(part_codes)
        out = np.concatenate(codes, axis=1)
        return (out, last) if return_last_residual else out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        parts, tensors = [], {}
        for i, part in enumerate(self.parts):
            config, arrays = part.quantizer.state()
            parts.append(
                {
                    "modalities": part.modalities,
                    "weights": part.weights,
                    "method": part.quantizer.method,
                    "quantizer": config,
                    "projection": part.projection is not None,
                }
            )
            tensors.update({f"part{i}.{k}": v for k, v in arrays.items()})
            if part.projection is not None:
                tensors[f"part{i}.projection"] = part.projection
        return {"modalities": self.modalities, "dims": self.dims, "parts": parts}, tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> MultimodalQuantizer:
        from genrec.sid.semantic_ids import quantizer_classes

        classes = quantizer_classes()
        parts = []
        for i, part in enumerate(config["parts"]):
            prefix = f"part{i}."
            projection = tensors[f"{prefix}projection"] if part["projection"] else None
            arrays = {
                k[len(prefix) :]: v
                for k, v in tensors.items()
                if k.startswith(prefix) and k != f"{prefix}projection"
            }
            quantizer = classes[part["method"]].from_state(part["quantizer"], arrays)
            parts.append(QuantizerPart(part["modalities"], part["weights"], quantizer, projection))
        return cls(config["modalities"], config["dims"], parts)


def _plan(layout: str, modalities: list[str], levels: int | Mapping[str, int]) -> list[tuple[list[str], int]]:
    """``[(modalities of a part, its levels), ...]`` for a layout."""
    if layout == "fused":
        if not isinstance(levels, int):
            raise ValueError(f"layout 'fused' takes an int number of levels, got {levels!r}")
        return [(modalities, levels)]
    if layout == "per_modality":
        if isinstance(levels, int):
            raise ValueError("layout 'per_modality' needs levels per modality, e.g. {'text': 2, 'image': 1}")
        unknown = set(levels) - set(modalities)
        if unknown:
            raise ValueError(
                f"levels name modalities {sorted(unknown)} with no embeddings (have {modalities})"
            )
        plan = [([m], int(k)) for m, k in levels.items() if int(k) > 0]
        if not plan:
            raise ValueError(f"levels {dict(levels)} give no modality any level")
        return plan
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def build_multimodal_semantic_ids(
    embeddings: Mapping[str, np.ndarray],
    layout: str = "fused",
    levels: int | Mapping[str, int] = 3,
    codebook_size: int | list[int] = 256,
    weights: Mapping[str, float] | None = None,
    behaviour_pairs: np.ndarray | None = None,
    behaviour: BehaviourAlignConfig | None = None,
    method: str = "rqkmeans",
    balanced_last_level: bool = False,
    seed: int = 0,
    catalog: Catalog | None = None,
    item_ids: list[str] | None = None,
    show_progress: bool = True,
    **method_kwargs: Any,
) -> SemanticIDs:
    """Semantic IDs from several modalities (``{"text": (n, d1), "image": (n, d2)}``), catalog order.

    ``layout="fused"`` quantizes the weighted concatenation into ``levels`` levels; ``"per_modality"``
    takes ``levels`` as ``{"text": 2, "image": 1}`` (levels in that order). ``weights`` per modality
    default to 1. ``behaviour_pairs`` (from :func:`~genrec.embed.cooccurrence_pairs` over *training*
    sequences) first trains each part's projection so co-occurring items are close. ``codebook_size``
    is one size or one per level across all parts; the rest is as in
    :func:`~genrec.sid.build_semantic_ids`, including the diagnostics.
    """
    if not embeddings:
        raise ValueError("embeddings needs at least one modality")
    modalities = list(embeddings)
    blocks = {m: check_embeddings(e, f"embeddings[{m!r}]") for m, e in embeddings.items()}
    n = len(blocks[modalities[0]])
    for m, block in blocks.items():
        if len(block) != n:
            raise ValueError(f"embeddings[{m!r}] has {len(block)} rows, embeddings[{modalities[0]!r}] {n}")
    item_ids = resolve_item_ids(catalog, item_ids, n)
    weights = {m: 1.0 for m in modalities} | dict(weights or {})
    if set(weights) - set(modalities):
        raise ValueError(
            f"weights name modalities {sorted(set(weights) - set(modalities))} with no embeddings"
        )
    plan = _plan(layout, modalities, levels)
    sizes = expand_sizes(sum(k for _, k in plan), codebook_size)
    behaviour = behaviour or BehaviourAlignConfig()
    start = time.perf_counter()
    parts = []
    for mods, k in plan:
        part_sizes, sizes = sizes[:k], sizes[k:]
        part_weights = [float(weights[m]) for m in mods]
        x = _part_inputs(blocks, mods, part_weights, None)
        projection = None
        if behaviour_pairs is not None:
            projection = align_to_behaviour(x, behaviour_pairs, behaviour, show_progress)
            x = project(x, projection)
        quantizer, _ = fit_quantizer(x, method, k, part_sizes, seed, show_progress, method_kwargs)
        parts.append(QuantizerPart(mods, part_weights, quantizer, projection))
    quantizer = MultimodalQuantizer(modalities, [blocks[m].shape[1] for m in modalities], parts)
    missing = {m: int((~blocks[m].any(axis=1)).sum()) for m in modalities}
    for m, count in missing.items():
        if count:
            logger.warning(
                "%d items have no %s embedding: their codes come from the other modalities", count, m
            )
    build_config = {
        "method": MultimodalQuantizer.method,
        "layout": layout,
        "modalities": modalities,
        "levels": levels if isinstance(levels, int) else dict(levels),
        "codebook_size": codebook_size,
        "weights": weights,
        "part_method": method,
        "behaviour": dataclasses.asdict(behaviour) if behaviour_pairs is not None else None,
        "balanced_last_level": balanced_last_level,
        "seed": seed,
        **method_kwargs,
    }
    return assemble_semantic_ids(
        quantizer,
        quantizer.stack(blocks),
        time.perf_counter() - start,
        build_config,
        balanced_last_level,
        item_ids,
        item_labels(catalog) if catalog is not None else None,
        diagnostics={"missing_modality_items": missing},
    )


def parse_modality_map(text: str, value_type: type = float) -> dict[str, Any]:
    """``"text=2,image=1"`` -> ``{"text": 2, "image": 1}`` (the CLI's per-modality options)."""
    out: dict[str, Any] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, value = entry.partition("=")
        try:
            out[name.strip()] = value_type(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                f"expected MODALITY=VALUE pairs like 'text=2,image=1', got {entry!r} in {text!r}"
            )
    return out
