"""SmolLM2-135M + LoRA learns MovieLens-100K on a CPU budget, beside step 0, compact, SASRec and Popularity.

MovieLens-100K (943 users, 1,682 items), leave-one-out, full ranking over all items, all 943 test users.
Every model is scored twice: with each user's history masked inside the search (no ML-100K user rates a
film twice, so the K slots go to new films; the goals use these numbers) and unmasked, as TIGER reports.

    python -m bench.seqrec_ml100k_llm [--budget-minutes 70] [--threads 2]

Stages, each resumed from ``--work-dir`` when the bench is run again:
  1. throughput: today's recipe (one ``seqrec`` prompt per target, all 30 layers) against the new one
     (``sequence``: whole-sequence windows, loss on every item), on the same model and data, then with the
     truncated backbone of ``recipes/ml100k_smollm2_lora.yaml`` (its first 4 layers);
  2. the LLM at step 0 (same recipe, no training);
  3. the LLM trained with ``recipes/ml100k_smollm2_lora.yaml``: its step count is set once from the
     measured step time so that the cosine schedule ends inside ``--budget-minutes``;
  4. the compact SID model and SASRec, each capped at the same budget (both stop early on validation);
  5. Popularity (ties broken by lower item index).
The recipe was fixed before the run; the test split is scored once per model, and the run records that.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from bench.common import TimeLedger, count_test_evaluation, markdown_table, record
from genrec.baselines import Popularity, SASRecConfig, train_sasrec
from genrec.eval import bootstrap_interval, evaluate_lists, topk_ranks
from genrec.model.compact import CompactConfig, CompactTrainingConfig, train_compact
from genrec.model.recommender import GenerativeRecommender
from genrec.train import GenRecSFTTrainer, SFTRecipe, build_recommender, build_trainer, train_sft
from genrec.train.sft import load_or_build_sid, load_recipe_data
from genrec.utils import atomic_write_json, configure_threads, read_json

NAME = "seqrec_ml100k_llm"
KS = (5, 10)
OURS = "SmolLM2-135M + LoRA (ours)"
STEP0 = "LLM step 0"
TPUT_COLUMNS = ["targets_per_s", "tokens_per_s", "step_s", "targets_ratio", "tokens_ratio"]
COMPACT = CompactConfig(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, max_items=50)


class CountingTrainer(GenRecSFTTrainer):
    """Also counts next-item targets (first-level SID labels); the trainer already counts real tokens."""

    first_level_ids: torch.Tensor
    targets_seen: int = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.targets_seen += int(torch.isin(inputs["labels"], self.first_level_ids).sum())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class StepClock(TrainerCallback):
    """Starts the clock after ``warmup`` steps and snapshots the trainer's counters there."""

    def __init__(self, trainer: CountingTrainer, warmup: int):
        self.trainer, self.warmup = trainer, warmup
        self.start: tuple[float, int, int] | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = (time.perf_counter(), self.trainer._total_train_tokens, self.trainer.targets_seen)


def measure_throughput(recipe: SFTRecipe, dataset, sid, steps: int, warmup: int) -> dict[str, float]:
    """Next-item targets and real tokens trained per second, for ``steps`` steps after ``warmup``."""
    recipe = dataclasses.replace(
        recipe,
        train=dataclasses.replace(
            recipe.train, max_steps=steps + warmup, save_steps=10**6, logging_steps=10**6, report_to="none"
        ),
    )
    rec = build_recommender(recipe, dataset.catalog, sid)
    trainer = build_trainer(recipe, rec, dataset, trainer_cls=CountingTrainer)
    trainer.first_level_ids = torch.from_numpy(np.unique(rec.token_table[:, 0]))
    clock = StepClock(trainer, warmup)
    trainer.add_callback(clock)
    trainer.train()
    assert clock.start is not None
    seconds = time.perf_counter() - clock.start[0]
    return {
        "targets_per_s": (trainer.targets_seen - clock.start[2]) / seconds,
        "tokens_per_s": (trainer._total_train_tokens - clock.start[1]) / seconds,
        "step_s": seconds / steps,
    }


def top_lists(model: Any, histories: list[np.ndarray], beams: int) -> dict[str, np.ndarray]:
    """Top-10 lists with the history masked and unmasked, from any model with ``recommend``."""
    out = {}
    for masked in (True, False):
        if isinstance(model, GenerativeRecommender):
            top = model.recommend(histories, k=10, num_beams=beams, batch_size=32, exclude_history=masked)[0]
        else:
            top = model.recommend(histories, 10, exclude_history=masked)[0]
        out["masked" if masked else "unmasked"] = np.asarray(top)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/ml100k_smollm2_lora.yaml")
    p.add_argument("--work-dir", type=Path, default=Path("runs/seqrec_ml100k_llm"))
    p.add_argument("--budget-minutes", type=float, default=70.0, help="training budget of each model")
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--throughput-steps", type=int, default=6)
    p.add_argument("--max-users", type=int, default=None, help="smoke runs only: a user subset")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dry-run", action="store_true", help="print the summary without recording it")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "bench_state.json"
    state: dict[str, Any] = read_json(state_path) if state_path.is_file() else {}

    def save_state() -> None:
        atomic_write_json(state_path, state)

    recipe = SFTRecipe.from_yaml(args.config)
    recipe.override("train.output_dir", str(work / "llm"))
    recipe.override("train.num_threads", threads)
    if args.max_users is not None:
        recipe.override("data.max_users", args.max_users)
    dataset = load_recipe_data(recipe)
    sid = load_or_build_sid(recipe, dataset)
    test = dataset.test_examples()
    histories, targets = list(test.histories), np.asarray(test.targets)
    walls: dict[str, float] = state.setdefault("walls", {})
    saved: dict[str, dict[str, list]] = state.setdefault("lists", {})  # a rerun skips finished models

    def keep(name: str, top: dict[str, np.ndarray]) -> None:
        saved[name] = {view: rows.tolist() for view, rows in top.items()}
        save_state()

    # 1. throughput: today's recipe vs the new one, same model and data
    if "throughput" not in state:
        full = dataclasses.replace(recipe.model, num_layers=None)
        configs = {
            "seqrec prompts, 30 layers (before)": dataclasses.replace(
                recipe,
                model=full,
                data=dataclasses.replace(recipe.data, tasks={"seqrec": 1.0}, recommend_task="seqrec"),
            ),
            "whole sequence, 30 layers": dataclasses.replace(
                recipe, model=full, data=dataclasses.replace(recipe.data, tasks={"sequence": 1.0})
            ),
            f"whole sequence, {recipe.model.num_layers} layers (recipe)": dataclasses.replace(
                recipe, data=dataclasses.replace(recipe.data, tasks={"sequence": 1.0})
            ),
        }
        sample = dataset.subset(list(range(min(100, dataset.num_users))))  # the same data for each recipe
        state["throughput"] = {
            name: measure_throughput(
                dataclasses.replace(
                    c, train=dataclasses.replace(c.train, output_dir=str(work / "throughput"))
                ),
                sample,
                sid,
                args.throughput_steps,
                warmup=2,
            )
            for name, c in configs.items()
        }
        state["throughput_steps"] = args.throughput_steps
        save_state()
    throughput = state["throughput"]
    names = list(throughput)
    for name in names:
        throughput[name]["targets_ratio"] = (
            throughput[name]["targets_per_s"] / throughput[names[0]]["targets_per_s"]
        )
        throughput[name]["tokens_ratio"] = (
            throughput[name]["tokens_per_s"] / throughput[names[0]]["tokens_per_s"]
        )

    # 2. the LLM at step 0
    if STEP0 not in saved:
        t = time.perf_counter()
        keep(STEP0, top_lists(build_recommender(recipe, dataset.catalog, sid), histories, args.beams))
        walls["llm_step0_test"] = time.perf_counter() - t

    # 3. the LLM, its schedule fitted to the budget once (from the recipe's measured step time)
    if "llm_max_steps" not in state:
        step_s = throughput[names[-1]]["step_s"]
        state["llm_max_steps"] = int(60 * args.budget_minutes / step_s)
        save_state()
    recipe.override("train.max_steps", state["llm_max_steps"])
    if OURS not in saved:
        ledger = TimeLedger(work / "llm_time.json", args.budget_minutes)
        t = time.perf_counter()
        rec = train_sft(recipe, resume=True, dataset=dataset, sid=sid, callbacks=[ledger])
        walls["llm_train_last_call"] = time.perf_counter() - t
        t = time.perf_counter()
        keep(OURS, top_lists(rec, histories, args.beams))
        walls["llm_test"] = time.perf_counter() - t
        del rec
    trained = read_json(work / "llm_time.json")

    # 4. compact and SASRec, each capped at the same budget
    if "Compact" not in saved:
        t = time.perf_counter()
        compact = train_compact(
            dataset,
            [sid.item_tokens(i) for i in range(dataset.num_items)],
            CompactTrainingConfig(
                output_dir=str(work / "compact"),
                compact=COMPACT,
                epochs=200,
                batch_size=64,
                learning_rate=2e-3,
                warmup_steps=50,
                eval_users=0,
                patience=5,
                max_minutes=args.budget_minutes,
                num_threads=threads,
            ),
        )
        walls["compact_train"] = time.perf_counter() - t
        keep(
            "Compact",
            top_lists(
                GenerativeRecommender.from_compact(compact, dataset.catalog, sid), histories, args.beams
            ),
        )
    if "SASRec" not in saved:
        t = time.perf_counter()
        sasrec = train_sasrec(
            dataset,
            SASRecConfig(num_threads=threads, time_budget_s=60 * args.budget_minutes),
            output_dir=work / "sasrec",
        )
        walls["sasrec_train"] = time.perf_counter() - t
        keep("SASRec", top_lists(sasrec, histories, args.beams))
    keep("Popularity", top_lists(Popularity().fit(dataset), histories, args.beams))
    lists = {name: {view: np.asarray(rows) for view, rows in top.items()} for name, top in saved.items()}

    # scores, intervals, summary
    def scores(view: str) -> dict[str, dict[str, float]]:
        return {
            name: evaluate_lists(top[view], targets, dataset.num_items, KS) for name, top in lists.items()
        }

    masked, unmasked = scores("masked"), scores("unmasked")
    hits = {
        name: (topk_ranks(top["masked"], targets) <= 10).numpy().astype(float) for name, top in lists.items()
    }
    ci = bootstrap_interval(hits[OURS])
    gains = {
        name: bootstrap_interval(hits[OURS] - hits[name]) for name in lists if name != OURS
    }  # paired: the LLM minus each baseline, same users
    model_settings = recipe.to_dict()
    for setting in ("output_dir", "num_threads"):  # where and how fast it ran, not what was tested
        model_settings["train"].pop(setting)
    looks = count_test_evaluation(NAME, {"recipe": model_settings, "beams": args.beams})
    metrics = {**masked[OURS], "recall@10_ci95": list(ci), "test_evaluations": looks["this_config"]}
    columns = ["model", "recall@5", "ndcg@5", "recall@10", "ndcg@10", "coverage@10", "valid_item_rate"]
    tput_rows = [{"recipe": n, **{k: v for k, v in m.items()}} for n, m in throughput.items()]
    pop = masked["Popularity"]["recall@10"]
    batch = recipe.train.per_device_train_batch_size
    summary = (
        f"MovieLens-100K, all {len(targets)} test users, leave-one-out, full ranking over "
        f"{dataset.num_items:,} items, beam {args.beams}. LLM: `{args.config}` (SmolLM2-135M-Instruct, first "
        f"{recipe.model.num_layers} layers, LoRA r={recipe.lora.r} + trainable SID rows, tasks "
        f"{recipe.data.tasks}), {state['llm_max_steps']} steps of batch {batch} "
        f"in {trained['seconds'] / 60:.1f} CPU minutes ({threads} threads). Compact and SASRec: same "
        f"{args.budget_minutes:.0f}-minute cap, early-stopped on validation "
        f"({walls['compact_train'] / 60:.1f} and {walls['sasrec_train'] / 60:.1f} min in the last call).\n\n"
        f"History masked inside the search (the goals use these):\n\n"
        f"{markdown_table([{'model': n, **m} for n, m in masked.items()], columns)}\n"
        f"Unmasked (as TIGER reports):\n\n"
        f"{markdown_table([{'model': n, **m} for n, m in unmasked.items()], columns)}\n"
        f"LLM recall@10 (masked) {masked[OURS]['recall@10']:.4f}, 95% bootstrap interval "
        f"[{ci[0]:.4f}, {ci[1]:.4f}]; {masked[OURS]['recall@10'] / pop:.2f}x Popularity. "
        f"Paired 95% intervals of (LLM - baseline) recall@10: "
        + "; ".join(f"{n} [{lo:+.4f}, {hi:+.4f}]" for n, (lo, hi) in gains.items())
        + f".\n\nTraining throughput on the first 100 ML-100K users (same model, "
        f"{state.get('throughput_steps', args.throughput_steps)} timed steps after 2, "
        f"batch {batch}); targets = next-item targets trained:\n\n"
        f"{markdown_table(tput_rows, ['recipe', *TPUT_COLUMNS])}"
    )
    print(summary)
    if args.dry_run:
        return
    record(
        NAME,
        dataset="movielens-100k" if args.max_users is None else f"movielens-100k[{args.max_users} users]",
        metrics=metrics,
        baselines={name: m for name, m in masked.items() if name != OURS},
        wall_times=walls,
        summary=summary,
        extra={
            "unmasked": {
                "metrics": unmasked[OURS],
                "baselines": {n: m for n, m in unmasked.items() if n != OURS},
            },
            "paired_recall@10_gain_ci95": {n: list(v) for n, v in gains.items()},
            "throughput": throughput,
            "llm_steps": state["llm_max_steps"],
            "llm_train_seconds": trained["seconds"],
            "recipe": recipe.to_dict(),
            "test_users": len(targets),
        },
    )


if __name__ == "__main__":
    main()
