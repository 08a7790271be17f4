"""The SFT stage: recipe -> dataset + semantic IDs -> prompts -> LoRA SFT with trl -> a saved recommender.

Checkpoints go to ``output_dir/checkpoint-<step>`` (trl/transformers format, optimizer included); with
``resume=True`` training continues from the last one at its global step. The trained recommender is saved
to ``output_dir/final`` (see :class:`genrec.model.GenerativeRecommender`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from genrec.data.reviews import dataset_reviews
from genrec.model.explain import ExplanationConfig
from genrec.model.recommender import GenerativeRecommender
from genrec.prompts.examples import build_eval_examples, build_sft_examples
from genrec.prompts.explanations import ExplanationExample, grounded_explanations, review_explanations
from genrec.prompts.templates import load_templates
from genrec.train.config import SFTRecipe
from genrec.train.teacher import teacher_explanations
from genrec.train.trainer import GenRecSFTTrainer
from genrec.utils import atomic_write, configure_threads, get_logger, read_json, seed_everything
from genrec.utils.checkpoint import TRAINER_STATE, latest_checkpoint

logger = get_logger(__name__)


def load_recipe_data(recipe: SFTRecipe) -> Any:
    """The recipe's dataset, cut to ``data.max_users`` random users (seeded) when set."""
    from genrec.data import load_dataset

    dataset = load_dataset(recipe.data.dataset, **recipe.data.dataset_kwargs)
    n = recipe.data.max_users
    if n is not None and n < dataset.num_users:
        users = np.sort(
            np.random.default_rng(recipe.data.user_seed).choice(dataset.num_users, n, replace=False)
        )
        dataset = dataset.subset(users.tolist())
    return dataset


def load_or_build_sid(recipe: SFTRecipe, dataset: Any) -> Any:
    """``sid.path`` if given; else built once, as the ``sid`` section says, in ``output_dir/semantic_ids``."""
    from accelerate import PartialState

    from genrec.sid import SemanticIDs, load_or_build_semantic_ids

    if recipe.sid.path is not None:
        return SemanticIDs.from_pretrained(recipe.sid.path, catalog=dataset.catalog)
    # The main process builds and saves; the others then load what it saved.
    with PartialState().main_process_first():
        return load_or_build_semantic_ids(dataset, Path(recipe.train.output_dir) / "semantic_ids", recipe.sid)


def sft_config(recipe: SFTRecipe, has_eval: bool) -> Any:
    """trl ``SFTConfig`` from the recipe's ``train`` section."""
    from trl import SFTConfig

    t = recipe.train
    report_to: Any = t.report_to
    if report_to == "auto":
        report_to = ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none"
    cuda = torch.cuda.is_available()
    defaults: dict[str, Any] = dict(
        output_dir=t.output_dir,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps or t.save_steps,
        seed=t.seed,
        bf16=t.bf16,
        fp16=False,
        use_cpu=not cuda,
        padding_free=t.padding_free,
        # Histories are capped when prompts are rendered, so examples are short; padding-free needs no cap.
        max_length=None if t.padding_free else 1024,
        completion_only_loss=True,
        gradient_checkpointing=t.gradient_checkpointing,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=report_to,
    )
    return SFTConfig(**{**defaults, **t.extra})  # the recipe's ``extra`` overrides any default


def explanation_examples(
    recipe: SFTRecipe, rec: GenerativeRecommender, dataset: Any
) -> list[ExplanationExample] | None:
    """Targets for the recipe's explanation templates from ``data.explanation_source``; ``None`` when the
    mix trains no explanation template."""
    names = [
        name
        for name, weight in recipe.data.tasks.items()
        if weight > 0 and name in rec.templates and rec.templates[name].task == "explanation"
    ]
    if not names:
        return None
    source = recipe.data.explanation_source
    if source == "grounding":
        return grounded_explanations(dataset)
    if source == "reviews":
        return review_explanations(dataset, dataset_reviews(dataset, recipe.data.explanation_reviews))
    if source == "teacher":
        from accelerate import PartialState

        # The main process generates and caches; the others then read its cache.
        with PartialState().main_process_first():
            return teacher_explanations(
                rec,
                dataset,
                recipe.data.teacher_max_count,
                Path(recipe.train.output_dir) / "teacher_explanations.jsonl",
                ExplanationConfig(template=names[0]),
                seed=recipe.train.seed,
            )
    raise ValueError(f"data.explanation_source must be 'grounding', 'reviews' or 'teacher', got {source!r}")


def build_trainer(
    recipe: SFTRecipe,
    rec: GenerativeRecommender,
    dataset: Any,
    callbacks: list | None = None,
    trainer_cls: type[GenRecSFTTrainer] = GenRecSFTTrainer,
) -> GenRecSFTTrainer:
    """Examples from the recipe's task mix, and a trainer (``trainer_cls``) over ``rec.model``."""
    from datasets import Dataset

    templates = rec.templates
    train = build_sft_examples(
        dataset,
        rec.sid,
        templates,
        recipe.data.tasks,
        rec.tokenizer,
        max_history=recipe.data.max_history,
        seed=recipe.train.seed,
        explanations=explanation_examples(recipe, rec, dataset),
    )
    train.pop("task")
    eval_ds = None
    if recipe.data.eval_users > 0:
        ev = build_eval_examples(
            dataset,
            rec.sid,
            rec.template,
            rec.tokenizer,
            max_history=recipe.data.max_history,
            max_users=recipe.data.eval_users,
        )
        ev.pop("task")
        eval_ds = Dataset.from_dict(ev)
    restrict = rec.score_token_ids  # the recommender decodes under the same softmax it trains with
    return trainer_cls(
        model=rec.model,
        args=sft_config(recipe, eval_ds is not None),
        train_dataset=Dataset.from_dict(train),
        eval_dataset=eval_ds,
        processing_class=rec.tokenizer,
        restrict_ids=None if restrict is None else restrict.tolist(),
        callbacks=callbacks,
    )


def build_recommender(
    recipe: SFTRecipe, catalog: Any, sid: Any, model: Any = None, tokenizer: Any = None
) -> GenerativeRecommender:
    """The untrained recommender a recipe describes: base LM, SID tokens, LoRA, and the recipe's templates."""
    names = set(recipe.data.tasks) | {recipe.data.recommend_task}
    return GenerativeRecommender.build(
        catalog,
        sid,
        base_model=recipe.model.base_model,
        gguf_file=recipe.model.gguf_file,
        lora=recipe.lora,
        full_finetune=not recipe.model.use_lora,
        sid_init=recipe.model.sid_init,
        num_layers=recipe.model.num_layers,
        sid_restricted_softmax=recipe.train.sid_restricted_loss,
        quantization=recipe.model.quantization,
        dtype=recipe.model.dtype,
        templates=load_templates(recipe.data.prompt_dir, names=sorted(names)),
        task=recipe.data.recommend_task,
        max_history=recipe.data.max_history,
        model=model,
        tokenizer=tokenizer,
    )


def train_sft(
    recipe: SFTRecipe,
    resume: bool = False,
    dataset: Any = None,
    sid: Any = None,
    callbacks: list | None = None,
    model: Any = None,
    tokenizer: Any = None,
) -> GenerativeRecommender:
    """Run the SFT stage end to end and save the recommender to ``output_dir/final``.

    ``dataset``/``sid`` override the recipe's (tests, notebooks); ``model``/``tokenizer`` wrap an already
    loaded LM (``model.base_model`` then names where to reload its base weights from).
    """
    configure_threads(recipe.train.num_threads)
    seed_everything(recipe.train.seed)
    out = Path(recipe.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "recipe.yaml") as fh:
        yaml.safe_dump(recipe.to_dict(), fh, sort_keys=False)
    dataset = dataset if dataset is not None else load_recipe_data(recipe)
    checkpoint = latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", out)
    if checkpoint is not None and (out / "final").is_dir() and _finished(checkpoint, recipe.train.max_steps):
        # The Trainer would take one more step past max_steps when resumed there: load the result instead.
        logger.info(
            "%s already reached max_steps=%d: loading %s", checkpoint, recipe.train.max_steps, out / "final"
        )
        return GenerativeRecommender.from_pretrained(out / "final", catalog=dataset.catalog)
    sid = sid if sid is not None else load_or_build_sid(recipe, dataset)
    rec = build_recommender(recipe, dataset.catalog, sid, model=model, tokenizer=tokenizer)
    trainer = build_trainer(recipe, rec, dataset, callbacks)
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    if trainer.is_world_process_zero():
        rec.save_pretrained(out / "final")
    return rec


def _finished(checkpoint: Path, max_steps: int) -> bool:
    """Whether ``checkpoint`` already holds a run's last step (``max_steps`` > 0 only)."""
    return 0 < max_steps <= read_json(checkpoint / TRAINER_STATE)["global_step"]
