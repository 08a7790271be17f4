"""What the explanation benches share: train a recipe's explainer under a wall-time budget, generate each
system's explanations resumably, and keep examples for the docs.

Generation is the slow part on a CPU, so every system's texts are cached in ``<work-dir>/texts/<system>.json``
(rewritten atomically after each batch) under a key of the model state and the pairs: a rerun generates
only what is missing, and a retrained model or another sample starts afresh.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.common import TimeLedger, count_test_evaluation, markdown_table, record
from genrec.model import GenerativeRecommender
from genrec.model.explain import ExplanationConfig
from genrec.train import SFTRecipe, train_sft
from genrec.utils import atomic_write_json, configure_threads, read_json
from genrec.utils.checkpoint import TRAINER_STATE, latest_checkpoint

OURS = "tuned (LoRA)"
FREE = "tuned, free decoding"
# name -> (explainer, grounded decoding); grounding is the product's default (ExplanationConfig.grounded)
LLM_SYSTEMS: dict[str, tuple[str, bool]] = {"base zero-shot": ("base", True), OURS: ("adapter", True)}


def parse_bench_args(
    doc: str, name: str, test_users: int, max_new_tokens: int, batch_size: int
) -> argparse.Namespace:
    """The explanation benches' command line (defaults: ``recipes/explain_<name>_smollm2_lora.yaml``,
    ``runs/explain_<name>``); sets up logging and threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=f"recipes/explain_{name}_smollm2_lora.yaml")
    p.add_argument("--work-dir", type=Path, default=Path(f"runs/explain_{name}"))
    p.add_argument("--test-users", type=int, default=test_users, help="random test pairs explained")
    p.add_argument("--train-minutes", type=float, default=25.0, help="training cap, over all calls")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--free-decoding", action="store_true", help="also decode the tuned model ungrounded (an ablation)"
    )
    p.add_argument(
        "--split",
        choices=("test", "valid"),
        default="test",
        help="valid: explain the validation pairs instead, to choose decoding settings; nothing is recorded",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.threads = configure_threads(args.threads)
    return args


def bench_recipe(args: argparse.Namespace) -> SFTRecipe:
    """The recipe of ``--config``, training into ``--work-dir`` with ``--threads``."""
    recipe = SFTRecipe.from_yaml(args.config)
    recipe.override("train.num_threads", args.threads)
    recipe.override("train.output_dir", str(args.work_dir / "llm"))
    return recipe


def train_explainer(
    recipe: SFTRecipe, dataset: Any, sid: Any, work_dir: Path, minutes: float
) -> tuple[GenerativeRecommender, dict[str, Any]]:
    """The recipe's model trained for at most ``minutes`` of wall time over all calls, resumed from its
    ``train.output_dir`` (the time ledger lives in ``work_dir``); once the budget is spent, the saved
    ``final`` model is loaded instead."""
    out = Path(recipe.train.output_dir)
    ledger = TimeLedger(work_dir / "llm_time.json", minutes)

    # A run whose time budget is spent is loaded, not resumed (train_sft does the same at max_steps).
    if (out / "final").is_dir() and ledger.spent >= ledger.budget:
        rec = GenerativeRecommender.from_pretrained(out / "final", catalog=dataset.catalog)
    else:
        rec = train_sft(recipe, resume=True, dataset=dataset, sid=sid, callbacks=[ledger])
    checkpoint = latest_checkpoint(out)
    state = read_json(checkpoint / TRAINER_STATE) if checkpoint is not None else {"global_step": 0}
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    info = {
        "steps": state["global_step"],
        "epochs": state["epoch"],
        "train_minutes": ledger.spent / 60,
        "examples_seen": state["global_step"] * recipe.train.per_device_train_batch_size,
        "loss_first_logged": losses[0] if losses else None,
        "loss_last_logged": losses[-1] if losses else None,
    }
    return rec, info


def trained_model_key(recipe: SFTRecipe, steps: int, explainer: str) -> dict[str, Any]:
    """What an explainer's texts depend on: the whole recipe and its steps for the adapter; for the base
    model (adapter and trained token rows disabled) only the model, SIDs and data, so a longer training run
    reuses the base model's cached texts."""
    sections = recipe.to_dict()
    if explainer == "base":
        return {k: sections[k] for k in ("model", "sid", "data")}
    return {**sections, "steps": steps}


def cached_texts(
    path: Path,
    key: dict[str, Any],
    count: int,
    produce: Callable[[int, int], list[str]],
    batch_size: int,
    desc: str,
) -> list[str]:
    """``produce(start, stop)`` for every batch of ``range(count)``, cached in ``path`` under ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    texts: list[str] = []
    if path.is_file():
        saved = read_json(path)
        if saved["key"] == digest:
            texts = saved["texts"][:count]
    with tqdm(total=count, initial=len(texts), desc=desc) as bar:
        while len(texts) < count:
            start = len(texts)
            texts.extend(produce(start, min(start + batch_size, count)))
            atomic_write_json(path, {"key": digest, "settings": key, "texts": texts})
            bar.update(len(texts) - start)
    return texts


def llm_texts(
    rec: GenerativeRecommender,
    recipe: SFTRecipe,
    training: dict[str, Any],
    histories: Sequence[np.ndarray],
    items: Sequence[int],
    config: ExplanationConfig,
    args: argparse.Namespace,
    walls: dict[str, float],
    systems: dict[str, tuple[str, bool]] = LLM_SYSTEMS,
) -> dict[str, list[str]]:
    """Explanations of every pair (``rec.explain``) by each of ``systems`` (name -> explainer, grounded),
    cached (see the module doc) and timed into ``walls``."""
    pairs = hashlib.sha256(json.dumps([[h.tolist(), int(i)] for h, i in zip(histories, items)]).encode())
    texts = {}
    for name, (explainer, grounded) in systems.items():
        t = time.perf_counter()
        system = dataclasses.replace(config, grounded=grounded)
        key = {
            **trained_model_key(recipe, training["steps"], explainer),
            "explainer": explainer,
            "config": repr(system),
            "pairs": pairs.hexdigest(),
        }
        label = f"{explainer}{'-grounded' if grounded else ''}"
        texts[name] = cached_texts(
            args.work_dir / "texts" / ("" if args.split == "test" else args.split) / f"{label}.json",
            key,
            len(items),
            lambda s, e, c=system, x=explainer: rec.explain(
                histories[s:e], items[s:e], c, x, args.batch_size
            ),
            args.batch_size,
            f"explanations ({label})",
        )
        walls[f"generate_{label}"] = time.perf_counter() - t
    return texts


def count_evaluation(
    name: str,
    recipe: SFTRecipe,
    args: argparse.Namespace,
    training: dict[str, Any],
    config: ExplanationConfig,
) -> dict[str, Any]:
    """Count one look at the test split by bench ``name`` with this trained model and decoding; returns
    what the result JSON records of the run (recipe, training, generation, ``test_evaluations``)."""
    tested = {
        "recipe": recipe.to_dict(),
        "users": args.test_users,
        "steps": training["steps"],
        "gen": repr(config),
    }
    return {
        "training": training,
        "test_evaluations": count_test_evaluation(name, tested),
        "generation": repr(config),
        "recipe": recipe.to_dict(),
    }


def shown_validation(
    args: argparse.Namespace, config: ExplanationConfig, results: dict[str, dict], keys: Sequence[str]
) -> bool:
    """With ``--split valid``: print the table (decoding settings are chosen on it) and return True, so
    the caller records nothing and counts no look at the test split."""
    if args.split == "test":
        return False
    rows = [{"system": name, **m} for name, m in results.items()]
    print(f"{args.split} pairs, {config}:\n{markdown_table(rows, ['system', *keys, 'mean_words'])}")
    return True


def add_mean_words(results: dict[str, dict[str, float]], texts: dict[str, list[str]]) -> None:
    """Each system's mean explanation length in words, beside its metrics."""
    for name, outputs in texts.items():
        results[name]["mean_words"] = float(np.mean([len(x.split()) for x in outputs]))


def record_explanations(
    name: str,
    dataset: str,
    results: dict[str, dict[str, float]],
    keys: Sequence[str],
    baselines: Sequence[str],
    walls: dict[str, float],
    summary: str,
    run: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Print ``summary`` and record the tuned model's ``keys`` (+ mean words) against ``baselines``, with
    ``run`` (recipe, training, generation settings, test-split count) and the bench's ``extra``."""
    print(summary)
    record(
        name,
        dataset=dataset,
        metrics={k: results[OURS][k] for k in (*keys, "mean_words")},
        baselines={b: results[b] for b in baselines},
        wall_times=walls,
        summary=summary,
        extra={**run, **extra},
    )
