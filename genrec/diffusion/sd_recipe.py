"""YAML recipe -> user soft prompts for a Stable Diffusion 1.5-class checkpoint (see docs/thumbnails.md).

A recipe has the thumbnail recipe's sections plus ``model`` (the user's SD checkpoint) and ``holdout``;
``training`` maps one to one onto :class:`SoftPromptTrainingConfig`. Each training example is (a training
user, one of that user's training items with an image): the user's vector (by default the mean content
embedding of their training history), the item's image and the item rendered through
``training.prompt_template`` (sandboxed Jinja2). Held-out users and items never train.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import PartialState

from genrec.diffusion.data import hold_out, load_item_images
from genrec.diffusion.recipe import apply_overrides, build_user_encoder, load_recipe_dataset
from genrec.diffusion.sd_bridge import (
    PersonalizedStableDiffusion,
    SoftPromptTrainingConfig,
    UserSoftPrompt,
    train_soft_prompt,
)
from genrec.embed import encode_items
from genrec.embed.text import ItemTextTemplate
from genrec.users import MeanItemEncoder
from genrec.utils.io import atomic_write_json
from genrec.utils.runtime import get_logger, seed_everything

logger = get_logger(__name__)
SECTIONS = ("model", "data", "item_text", "user_encoder", "holdout", "training")
HOLDOUT_FIELDS = ("test_user_fraction", "test_item_fraction", "seed")
SD_PARTS = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass
class SDThumbnailRecipe:
    """``model`` is the user's SD checkpoint; ``training`` maps one to one onto SoftPromptTrainingConfig."""

    model: str | None = None
    data: dict[str, Any] = field(default_factory=lambda: {"name": "ml1m-posters"})
    item_text: dict[str, Any] = field(default_factory=dict)  # template + model of the item embeddings
    user_encoder: dict[str, Any] = field(default_factory=lambda: {"type": "mean"})
    holdout: dict[str, Any] = field(default_factory=dict)  # test_user_fraction, test_item_fraction, seed
    training: SoftPromptTrainingConfig = field(default_factory=SoftPromptTrainingConfig)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> SDThumbnailRecipe:
        """Read a recipe; ``overrides`` (``model=...``, ``training.steps=10``) are parsed as YAML values."""
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ValueError(f"{path}: unknown recipe section(s) {', '.join(unknown)}; expected {SECTIONS}")
        apply_overrides(raw, overrides or [], SECTIONS[1:], scalars=("model",))
        holdout = raw.get("holdout") or {}
        if set(holdout) - set(HOLDOUT_FIELDS):
            raise ValueError(f"holdout fields are {HOLDOUT_FIELDS}, got {sorted(holdout)}")
        model = raw.get("model")
        return cls(
            model=None if model is None else str(model),
            data=raw.get("data") or {"name": "ml1m-posters"},
            item_text=raw.get("item_text") or {},
            user_encoder=raw.get("user_encoder") or {"type": "mean"},
            holdout=holdout,
            training=SoftPromptTrainingConfig.from_dict(raw.get("training") or {}),
        )


def check_model(model: str | None) -> None:
    """Fail before any data is loaded when the checkpoint is not given or not a diffusers SD folder."""
    hint = (
        "set `model:` to a local Stable Diffusion 1.5-class diffusers folder (model_index.json, unet, vae, "
        "text_encoder, tokenizer, scheduler) or a Hugging Face id, e.g. --set model=/models/sd-v1-5"
    )
    if not model:
        raise ValueError(f"the recipe names no checkpoint: {hint}; nothing is downloaded for you")
    path = Path(model).expanduser()
    if path.is_dir():
        missing = [part for part in SD_PARTS if not (path / part).exists()]
        if missing:
            raise ValueError(
                f"{path} is not a Stable Diffusion diffusers folder: missing {', '.join(missing)}"
            )
    elif path.exists() or path.is_absolute() or model.startswith((".", "~")) or not _HUB_ID.fullmatch(model):
        raise ValueError(f"model {model!r} does not exist: {hint}")


def load_stable_diffusion(model: str, mixed_precision: str):
    from diffusers import StableDiffusionPipeline

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    try:
        return StableDiffusionPipeline.from_pretrained(
            model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError) as err:  # e.g. a Hub id that is neither cached nor reachable
        raise ValueError(f"could not load the Stable Diffusion checkpoint {model!r}: {err}") from err


def build_examples(recipe: SDThumbnailRecipe):
    """``(images, prompts, user_vectors, pairs)`` for :func:`train_soft_prompt`, plus the held-out split."""
    cfg = recipe.training
    dataset = load_recipe_dataset(recipe.data)
    logger.info("soft-prompt training on %r", dataset)
    encoder = build_user_encoder(recipe.user_encoder, dataset, Path(cfg.output_dir))
    if encoder is None:  # the mean of the history's item content embeddings
        item_emb = encode_items(
            dataset.catalog,
            model=recipe.item_text.get("model"),
            template=recipe.item_text.get("template"),
            cache_dir=recipe.item_text.get("cache_dir"),
        )
        encoder = MeanItemEncoder(item_emb, max_len=recipe.user_encoder.get("max_len", 50))
    split = hold_out(
        dataset,
        recipe.holdout.get("test_user_fraction", 0.1),
        recipe.holdout.get("test_item_fraction", 0.05),
        recipe.holdout.get("seed", cfg.seed),
    )
    images = load_item_images(dataset.catalog, cfg.resolution)
    texts = ItemTextTemplate(cfg.prompt_template, name="training.prompt_template").render_all(dataset.catalog)
    allowed = images.has_image & ~split.item_mask(dataset.num_items)
    test_user = split.user_mask(dataset.num_users)
    sequences = dataset.train_sequences()
    train_users = [u for u in range(dataset.num_users) if not test_user[u] and len(sequences[u])]
    pairs = []
    for k, u in enumerate(train_users):
        items = np.unique(sequences[u])
        rows = images.row_of[items[allowed[items]]]
        pairs.append(np.stack([np.full(len(rows), k), rows], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
    if len(pairs) == 0:
        raise ValueError("no training examples: every item is held out or has no image")
    histories = [sequences[u] for u in train_users]
    users = torch.cat([encoder.encode(histories[i : i + 512]) for i in range(0, len(histories), 512)])
    logger.info(
        "%d examples: %d users, %d images at %dpx (%d users, %d items held out)",
        len(pairs),
        len(train_users),
        len(images.indices),
        cfg.resolution,
        len(split.test_users),
        len(split.test_items),
    )
    held_out = {
        "test_users": [dataset.users[u] for u in split.test_users],
        "test_items": [dataset.catalog[int(i)].id for i in split.test_items],
    }
    return images.pixels, [texts[i] for i in images.indices], users, pairs, held_out


def run_sd_recipe(recipe: SDThumbnailRecipe, resume: bool = False) -> PersonalizedStableDiffusion:
    cfg = recipe.training
    check_model(recipe.model)
    pipe = load_stable_diffusion(recipe.model, cfg.mixed_precision)
    images, prompts, users, pairs, held_out = build_examples(recipe)
    out = Path(cfg.output_dir)
    if PartialState().is_main_process:
        atomic_write_json(out / "recipe.json", dataclasses.asdict(recipe))
        atomic_write_json(out / "holdout.json", held_out)
    seed_everything(cfg.seed)
    width = pipe.text_encoder.config.hidden_size
    soft_prompt = UserSoftPrompt(users.shape[1], width, num_tokens=cfg.num_tokens, hidden_dim=cfg.hidden_dim)
    bridge = PersonalizedStableDiffusion(pipe, soft_prompt)
    train_soft_prompt(bridge, images, prompts, users, cfg, pairs, resume=resume)
    logger.info("soft prompt saved to %s", out / "soft_prompt")
    return bridge
