"""What the explanation benches share: train a recipe's explainer under a wall-time budget, generate each
system's explanations resumably, and keep examples for the docs.

Generation is the slow part on a CPU, so every system's texts are cached in ``<work-dir>/texts/<system>.json``
(rewritten atomically after each batch) under a key of the model state and the pairs: a rerun generates
only what is missing, and a retrained model or another sample starts afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.common import TimeLedger
from genrec.model import GenerativeRecommender
from genrec.model.explain import ExplanationConfig
from genrec.train import SFTRecipe, train_sft
from genrec.utils import atomic_write_json, configure_threads, read_json

OURS = "tuned (LoRA)"
LLM_SYSTEMS = (("base zero-shot", "base"), (OURS, "adapter"))


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
    """The recipe's model trained for at most ``minutes`` of wall time over all calls (resumed from
    ``work_dir/llm``); once the budget is spent, the saved ``final`` model is loaded instead."""
    out = work_dir / "llm"
    recipe.override("train.output_dir", str(out))
    ledger = TimeLedger(work_dir / "llm_time.json", minutes)
    if (out / "final").is_dir() and ledger.spent >= ledger.budget:
        rec = GenerativeRecommender.from_pretrained(out / "final", catalog=dataset.catalog)
    else:
        rec = train_sft(recipe, resume=True, dataset=dataset, sid=sid, callbacks=[ledger])
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda q: int(q.name.split("-")[1]))
    state = read_json(checkpoints[-1] / "trainer_state.json")
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
) -> dict[str, list[str]]:
    """The base model's zero-shot and the tuned adapter's explanations of every pair, timed into ``walls``."""
    texts = {}
    for name, explainer in LLM_SYSTEMS:
        t = time.perf_counter()
        texts[name] = explainer_texts(
            rec,
            explainer,
            histories,
            items,
            config,
            args.work_dir / "texts" / f"{explainer}.json",
            trained_model_key(recipe, training["steps"], explainer),
            args.batch_size,
        )
        walls[f"generate_{explainer}"] = time.perf_counter() - t
    return texts


def explainer_texts(
    rec: GenerativeRecommender,
    explainer: str,
    histories: Sequence[np.ndarray],
    items: Sequence[int],
    config: ExplanationConfig,
    cache: Path,
    model_key: dict[str, Any],
    batch_size: int,
) -> list[str]:
    """``rec.explain`` for every pair with the adapter or the base model, cached (see the module doc)."""
    key = {
        **model_key,
        "explainer": explainer,
        "config": repr(config),
        "pairs": hashlib.sha256(
            json.dumps([[h.tolist(), int(i)] for h, i in zip(histories, items)]).encode()
        ).hexdigest(),
    }
    return cached_texts(
        cache,
        key,
        len(items),
        lambda s, e: rec.explain(histories[s:e], items[s:e], config, explainer, batch_size),
        batch_size,
        f"explanations ({explainer})",
    )
