"""YAML recipe -> dataset, item embeddings, user encoder and :class:`ThumbnailTrainer`.

A recipe has four sections; ``training`` maps one to one onto :class:`ThumbnailTrainingConfig`::

    data: {name: ml1m-posters}            # or {name: synthetic, num_users: .., image_dir: ..}
    item_text: {template: "{{ title }}. Genres: {{ genres | join(', ') }}", model: null}
    user_encoder: {type: mean}            # mean | sasrec (trains or loads one) | llm (any HF causal LM)
    training: {output_dir: runs/thumbnails_ml1m, train_steps: 20000, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genrec.data import SequenceDataset, load_dataset
from genrec.diffusion.pipeline import PersonalizedThumbnailPipeline
from genrec.diffusion.trainer import ThumbnailTrainer, ThumbnailTrainingConfig
from genrec.users import CausalLMUserEncoder, SASRecUserEncoder, UserEncoder, title_prompt
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)
_SECTIONS = ("data", "item_text", "user_encoder", "training")


@dataclass
class ThumbnailRecipe:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "synthetic"})
    item_text: dict[str, Any] = field(default_factory=dict)
    user_encoder: dict[str, Any] = field(default_factory=lambda: {"type": "mean"})
    training: ThumbnailTrainingConfig = field(default_factory=ThumbnailTrainingConfig)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> ThumbnailRecipe:
        """Read a recipe; ``overrides`` like ``training.train_steps=10`` are parsed as YAML values."""
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        unknown = sorted(set(raw) - set(_SECTIONS))
        if unknown:
            raise ValueError(
                f"{path}: unknown recipe section(s) {', '.join(unknown)}; expected {', '.join(_SECTIONS)}"
            )
        apply_overrides(raw, overrides or [], _SECTIONS)
        return cls(
            data=raw.get("data") or {"name": "synthetic"},
            item_text=raw.get("item_text") or {},
            user_encoder=raw.get("user_encoder") or {"type": "mean"},
            training=ThumbnailTrainingConfig.from_dict(raw.get("training") or {}),
        )


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], sections: tuple[str, ...], scalars: tuple[str, ...] = ()
) -> None:
    """Apply ``<section>.<field>=<value>`` (or ``<scalar>=<value>``) overrides, values parsed as YAML."""
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if sep and not dot and section in scalars:
            raw[section] = yaml.safe_load(value)
        elif sep and dot and section in sections:
            raw[section] = {**(raw.get(section) or {}), name: yaml.safe_load(value)}
        else:
            forms = " or ".join([f"{s}=<value>" for s in scalars] + ["<section>.<field>=<value>"])
            raise ValueError(f"override {item!r} must look like {forms}")


def load_recipe_dataset(spec: dict[str, Any]) -> SequenceDataset:
    spec = dict(spec)
    name = spec.pop("path", None) or spec.pop("name")
    return load_dataset(name, **spec)


def build_user_encoder(
    spec: dict[str, Any], dataset: SequenceDataset, output_dir: Path
) -> UserEncoder | None:
    """``None`` for the built-in mean encoder (the trainer builds it from the item embeddings)."""
    kind = spec.get("type", "mean")
    if kind == "mean":
        return None
    if kind == "sasrec":
        from genrec.baselines import SASRec, SASRecConfig, train_sasrec

        if spec.get("path"):
            sasrec = SASRec.from_pretrained(spec["path"], catalog=dataset.catalog)
        else:
            sasrec = train_sasrec(
                dataset, SASRecConfig.from_dict(spec.get("config", {})), output_dir / "sasrec"
            )
        return SASRecUserEncoder(sasrec)
    if kind == "llm":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_id = spec["model"]
        kwargs = {"gguf_file": spec["gguf_file"]} if spec.get("gguf_file") else {}
        tokenizer = AutoTokenizer.from_pretrained(model_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
        return CausalLMUserEncoder(
            model, tokenizer, title_prompt(dataset.catalog.titles, spec.get("max_items", 20))
        )
    raise ValueError(f"user_encoder.type must be mean, sasrec or llm, got {kind!r}")


def run_recipe(recipe: ThumbnailRecipe, resume: bool = False) -> PersonalizedThumbnailPipeline:
    """Build everything the recipe names and train; the pipeline lands in ``<output_dir>/pipeline``."""
    from genrec.embed import encode_items

    dataset = load_recipe_dataset(recipe.data)
    logger.info("thumbnail training on %r", dataset)
    item_emb = encode_items(
        dataset.catalog,
        model=recipe.item_text.get("model"),
        template=recipe.item_text.get("template"),
        cache_dir=recipe.item_text.get("cache_dir"),
    )
    encoder = build_user_encoder(recipe.user_encoder, dataset, Path(recipe.training.output_dir))
    trainer = ThumbnailTrainer(recipe.training, dataset, item_emb, user_encoder=encoder)
    return trainer.train(resume=resume)
