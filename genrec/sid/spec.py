"""How a dataset's semantic IDs are built: one spec that recipes (the ``sid:`` section) and the CLI fill in.

Modalities are ``text`` (sentence-transformers), ``image`` (an image encoder by path) and ``behaviour``
(PPMI-SVD co-occurrence embeddings of the *training* sequences, :func:`genrec.embed.cooccurrence_embeddings`).
Text alone, fused, goes through :func:`~genrec.sid.build_semantic_ids`; anything else through
:func:`~genrec.sid.build_multimodal_semantic_ids`. The spec is saved with the IDs, so a folder built from
another spec is refused instead of silently reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrec.errors import CheckpointMismatchError
from genrec.sid.builder import build_semantic_ids
from genrec.sid.multimodal import LAYOUTS, build_multimodal_semantic_ids
from genrec.sid.semantic_ids import CONFIG_NAME, SemanticIDs
from genrec.utils.runtime import get_logger

if TYPE_CHECKING:
    from genrec.data import SequenceDataset

logger = get_logger(__name__)
SPEC_MODALITIES = ("text", "image", "behaviour")


@dataclass
class SemanticIDSpec:
    """Inputs and quantizer of a dataset's semantic IDs (every field has a recipe key of the same name)."""

    method: str = "rqkmeans"
    levels: int = 3
    codebook_size: int = 256
    embed_model: str | None = None  # sentence-transformers name or path; None = bundled MiniLM
    seed: int = 0
    modalities: list[str] = field(default_factory=lambda: ["text"])
    layout: str = "fused"  # or "per_modality": some levels from each modality, in order
    modality_levels: dict[str, int] = field(default_factory=dict)  # per_modality: levels per modality
    modality_weights: dict[str, float] = field(default_factory=dict)  # fused: weight per modality (1)
    image_encoder: str | None = None  # a genrec-pretrained or CLIP/SigLIP folder, or open_clip:ARCH:CKPT
    behaviour_dim: int = 64
    behaviour_window: int = 5  # items this many positions apart in a training sequence co-occur
    align_behaviour: bool = False  # project content so co-occurring items are close before quantizing
    balanced_last_level: bool = False  # spread colliding items over distinct last-level codes first
    # predict a missing modality (an item in no training sequence has no behaviour) from the item's others,
    # instead of coding it from a zero block (genrec.embed.impute)
    impute_missing: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in SPEC_MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(
                f"sid.modalities must be a non-empty subset of {SPEC_MODALITIES}, got {self.modalities}"
            )
        if self.layout not in LAYOUTS:
            raise ValueError(f"sid.layout must be one of {LAYOUTS}, got {self.layout!r}")
        if "image" in self.modalities and self.image_encoder is None:
            raise ValueError("sid.modalities includes 'image' but sid.image_encoder is not set")
        for name in ("modality_levels", "modality_weights"):
            extra = sorted(set(getattr(self, name)) - set(self.modalities))
            if extra:
                raise ValueError(f"sid.{name} names {extra}, which sid.modalities does not list")

    @property
    def text_only(self) -> bool:
        return self.modalities == ["text"] and self.layout == "fused" and not self.align_behaviour


def as_spec(spec: SemanticIDSpec | dict[str, Any] | None) -> SemanticIDSpec:
    """A plain spec from a spec, a subclass (a recipe's ``SIDArgs``) or a saved dict, whose missing
    fields (added after it was saved) take their defaults; unknown keys in a dict raise ``TypeError``."""
    if dataclasses.is_dataclass(spec):
        return SemanticIDSpec(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(SemanticIDSpec)})
    return SemanticIDSpec(**dict(spec or {}))


def _same_spec(saved: dict[str, Any] | None, spec: SemanticIDSpec) -> bool:
    try:
        return saved is not None and as_spec(saved) == spec
    except (TypeError, ValueError):  # saved by another genrec version, or invalid
        return False


def build_dataset_semantic_ids(
    dataset: SequenceDataset,
    spec: SemanticIDSpec | None = None,
    show_progress: bool = True,
    cache_dir: str | Path | None = None,
) -> SemanticIDs:
    """Semantic IDs of ``dataset.catalog`` built as ``spec`` says; behaviour reads training sequences only.
    Content embeddings are cached in ``cache_dir`` (default: genrec's cache folder)."""
    from genrec.embed import (
        cooccurrence_embeddings,
        cooccurrence_pairs,
        encode_item_modalities,
        impute_missing_modalities,
    )

    spec = as_spec(spec)
    catalog, train = dataset.catalog, dataset.train_sequences()
    content = [m for m in spec.modalities if m != "behaviour"]
    embeddings = (
        encode_item_modalities(catalog, content, spec.embed_model, spec.image_encoder, cache_dir)
        if content
        else {}
    )
    if "behaviour" in spec.modalities:
        embeddings["behaviour"] = cooccurrence_embeddings(
            train, dataset.num_items, spec.behaviour_dim, spec.behaviour_window, spec.seed
        )
    embeddings = {m: embeddings[m] for m in spec.modalities}  # the spec's order fixes the layout's order
    if spec.impute_missing:
        embeddings = impute_missing_modalities(embeddings)
    common: dict[str, Any] = dict(
        method=spec.method,
        codebook_size=spec.codebook_size,
        balanced_last_level=spec.balanced_last_level,
        seed=spec.seed,
        catalog=catalog,
        show_progress=show_progress,
    )
    if spec.text_only:
        sid = build_semantic_ids(embeddings["text"], levels=spec.levels, **common)
    else:
        per_modality = spec.layout == "per_modality"
        sid = build_multimodal_semantic_ids(
            embeddings,
            layout=spec.layout,
            levels=spec.modality_levels if per_modality else spec.levels,
            weights=spec.modality_weights,
            behaviour_pairs=(
                cooccurrence_pairs(train, spec.behaviour_window) if spec.align_behaviour else None
            ),
            **common,
        )
    sid.build_config["spec"] = dataclasses.asdict(spec)
    return sid


def load_or_build_semantic_ids(
    dataset: SequenceDataset, folder: str | Path, spec: SemanticIDSpec | None = None
) -> SemanticIDs:
    """The IDs saved in ``folder`` (checked against catalog and ``spec``); built and saved on first use."""
    spec = as_spec(spec)
    folder = Path(folder)
    if (folder / CONFIG_NAME).is_file():
        sid = SemanticIDs.from_pretrained(folder, catalog=dataset.catalog)
        saved = sid.build_config.get("spec")
        if not _same_spec(saved, spec):
            raise CheckpointMismatchError(
                f"{folder} holds semantic IDs built from sid spec {saved}, not the requested "
                f"{dataclasses.asdict(spec)}; delete the folder or point sid.path at it"
            )
        return sid
    sid = build_dataset_semantic_ids(dataset, spec)
    sid.save_pretrained(folder)
    logger.info("semantic IDs built from %s and saved to %s", spec.modalities, folder)
    return sid
