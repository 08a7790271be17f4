"""What each quality lever gives the compact SID model on Beauty, judged on a validation set that can tell.

Every variant is ``recipes/compact_beauty.yaml`` without its item head, plus its overrides, trained with
the same seed, schedule and SIDs, and scored on the same validation sample with ``eval_unseen_last``:
those users' last training item is left out of training, so their validation histories end, like test
histories, in an item the model never saw in that context (plain validation rewards memorising the
training sequences). The test split is never read; the variant chosen here is what
``bench.seqrec_beauty_compact`` then tests.

    python -m bench.compact_levers_beauty --threads 1                      # every variant, in turn
    python -m bench.compact_levers_beauty --threads 1 --variants dropout   # one (run two such at once)

Each variant keeps its state in ``<work-dir>/<variant>``; a rerun resumes, and the run that finds every
variant finished records the table, with paired 95% bootstrap intervals against ``recipe``. SASRec, trained
on the same data (``<work-dir>/sasrec``), is scored on the same users as a reference: its ratio to its own
test score says how much easier this validation is than test.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import beam_candidates, markdown_table, merged_lists, per_user_hits, record
from genrec.baselines import SASRecConfig, train_sasrec
from genrec.data import SequenceDataset, SplitExamples, load_amazon_p5
from genrec.eval import bootstrap_interval, evaluate_lists
from genrec.model.compact import CompactRecommender, CompactTrainingConfig, train_compact, validation_users
from genrec.sid import load_or_build_semantic_ids
from genrec.utils import atomic_write_json, configure_threads, read_json, shared_dataset

BASELINE = "recipe"
SASREC = "SASRec"
VARIANTS: dict[str, dict[str, Any]] = {  # overrides of the recipe, nested as in the YAML
    BASELINE: {},
    "dropout": {"compact": {"residual_dropout": 0.2, "embedding_dropout": 0.1}},
    "label smoothing": {"label_smoothing": 0.1},
    # no collision digit: colliding items spread over free last-level codes, every item 3 tokens
    "balanced sid": {"sid": {"balanced_last_level": True}},
    "20 epochs": {"epochs": 20},  # the schedule: validation still rose at epoch 10 of every variant
    # a full-softmax item head beside the token loss, re-ranking the beam's items (SIDLlamaForCausalLM)
    "item head": {"compact": {"item_head_weight": 1.0}, "epochs": 20},
    # its loss at half weight: at 1.0 the beam's own order fell below `20 epochs` (.0396 vs .0446)
    "item head 0.5": {"compact": {"item_head_weight": 0.5}, "epochs": 20},
    # the cosine annealed by epoch 12: at 20 epochs the head peaked at epoch 11, with the rate still at ~40%
    "item head 0.5 + 12 epochs": {"compact": {"item_head_weight": 0.5}, "epochs": 12},
    # the same on SIDs from another k-means seed: how much the codes' draw matters, and a second SID channel
    # to merge with the first (BARGE: two channels' hits overlap only partly)
    "item head 0.5 + 12 epochs + sid seed 1": {
        "compact": {"item_head_weight": 0.5},
        "epochs": 12,
        "sid": {"seed": 1},
    },
    # every training item a target: longer histories also train their earlier items, in windows of max_items
    "item head 0.5 + 12 epochs + windows": {
        "compact": {"item_head_weight": 0.5},
        "epochs": 12,
        "train_windows": True,
    },
}
SAME_SCHEDULE = "20 epochs"  # what the item-head variants are also compared with
HEAD_BASE = "item head 0.5"  # and what the variants of the item head are compared with
# the item heads' decoding settings, chosen here on validation: beam width (the candidates it re-ranks) and
# the weight of its log-probability beside the beam's (0 = the beam's own order)
RERANK_BEAMS, RERANK_WEIGHTS = (20, 40, 80), (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# Several variants' models recommending as one (genrec.model.channels): the union of their beams, ranked by
# summed beam and head scores (merge_beams). Codes from another k-means draw (BARGE's second SID channel), or
# the same codes under another schedule: both fail on other users than the recipe's model does.
MERGES: dict[str, tuple[str, ...]] = {
    "+ sid seed 1": ("item head 0.5 + 12 epochs", "item head 0.5 + 12 epochs + sid seed 1"),
    "+ 20 epochs": ("item head 0.5 + 12 epochs", "item head 0.5"),
    "+ sid seed 1 + 20 epochs": (
        "item head 0.5 + 12 epochs",
        "item head 0.5 + 12 epochs + sid seed 1",
        "item head 0.5",
    ),
    "windows + 20 epochs": ("item head 0.5 + 12 epochs + windows", "item head 0.5"),
}
MERGE_BEAMS, MERGE_WEIGHTS = (40, 80), (1.0, 2.0, 4.0)
MERGE_BASE = "item head 0.5 + 12 epochs"  # the recipe's first model: every merge is paired against it
# the same for every variant: a sample large enough to resolve ~.005 NDCG@10 paired, and a fixed schedule
COMMON = {
    "eval_users": 4000,
    "eval_unseen_last": True,
    "patience": 10**6,
    "max_minutes": None,
    "channels": [],  # one model per variant; merges of them are measured by merge_sweep
}


# the levers are measured from the recipe's model without the item head and windows it has since adopted
PLAIN = {"compact": {"item_head_weight": 0.0}, "train_windows": False}


def variant_config(recipe: dict[str, Any], overrides: dict[str, Any], epochs: int) -> CompactTrainingConfig:
    config = CompactTrainingConfig.from_dict({**recipe, **COMMON, "epochs": epochs})
    return config.with_overrides(PLAIN, "PLAIN").with_overrides(overrides, "variant")


def folder_name(variant: str) -> str:
    return variant.replace(" + ", "_").replace(" ", "_")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/compact_beauty.yaml")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--work-dir", type=Path, default=Path("runs/compact_levers_beauty"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sasrec-minutes", type=float, default=30.0, help="SASRec training budget")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    chosen = [v.strip() for v in args.variants.split(",")]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    with open(args.config, encoding="utf-8") as fh:
        recipe = yaml.safe_load(fh)
    dataset = load_amazon_p5(shared_dataset("amazon2014-beauty"))
    base = variant_config(recipe, {}, args.epochs)
    users = validation_users(dataset, base)
    valid = dataset.valid_examples().subset(users)

    for name in chosen:
        folder = args.work_dir / folder_name(name)
        if (folder / "result.json").is_file():
            continue
        config = variant_config(recipe, VARIANTS[name], args.epochs)
        config.output_dir, config.num_threads = str(folder / "compact"), threads
        # variants that keep the recipe's SIDs share one copy; a SID variant builds its own
        sid_folder = folder / "sid" if "sid" in VARIANTS[name] else args.work_dir / "sid"
        sid = load_or_build_semantic_ids(dataset, sid_folder, config.sid)
        t = time.perf_counter()
        train_compact(dataset, [sid.item_tokens(i) for i in range(dataset.num_items)], config)
        train_s = time.perf_counter() - t
        best = CompactRecommender.from_pretrained(folder / "compact" / "best", catalog=dataset.catalog)
        t = time.perf_counter()
        top, _ = best.recommend(valid.histories, k=10, num_beams=args.beams, batch_size=64)
        state = read_json(folder / "compact" / "trainer_state.json")
        atomic_write_json(
            folder / "result.json",
            {
                "overrides": VARIANTS[name],
                "top": top.tolist(),
                "train_s": train_s,
                "decode_ms_per_user": 1000 * (time.perf_counter() - t) / len(valid),
                "best_epoch": state["best_epoch"],
                "history": state["history"],
            },
        )

    results = {
        name: read_json(args.work_dir / folder_name(name) / "result.json")
        for name in VARIANTS
        if (args.work_dir / folder_name(name) / "result.json").is_file()
    }
    if set(results) != set(VARIANTS):
        print(f"finished: {sorted(results)}; the table is recorded once every variant has finished")
        return
    results[SASREC] = sasrec_reference(dataset, users, valid, args.work_dir, threads, args.sasrec_minutes)
    heads = [n for n, o in VARIANTS.items() if o.get("compact", {}).get("item_head_weight")]
    sweep = [
        {"variant": n, **row}
        for n in heads
        for row in rerank_sweep(dataset, valid, args.work_dir / folder_name(n))
    ]
    merges = merge_sweep(dataset, valid, args.work_dir, sweep)
    rows, hits, scores = [], {}, {}
    for name, result in results.items():
        top = np.asarray(result["top"])
        scores[name] = evaluate_lists(top, valid.targets, dataset.num_items, (5, 10))
        hits[name] = per_user_hits(top, valid.targets)
    gains = {
        name: {
            m: list(bootstrap_interval(hits[name][m] - hits[BASELINE][m])) for m in ("recall@10", "ndcg@10")
        }
        for name in results
        if name != BASELINE
    }
    head_gains = {
        (n, base): {m: list(bootstrap_interval(hits[n][m] - hits[base][m])) for m in hits[BASELINE]}
        for n in heads
        for base in (SAME_SCHEDULE, HEAD_BASE, MERGE_BASE)
        if n != base
    }
    for name, result in results.items():
        gain = gains.get(name)
        rows.append(
            {
                "variant": name,
                "overrides": result["overrides"]
                if isinstance(result["overrides"], str)
                else yaml.safe_dump(result["overrides"], default_flow_style=True).strip() or "-",
                **scores[name],
                "ndcg@10 gain (95% CI)": "-"
                if gain is None
                else f"[{gain['ndcg@10'][0]:+.4f}, {gain['ndcg@10'][1]:+.4f}]",
                "best_epoch": result["best_epoch"],
                "train_min": result["train_s"] / 60,
                "decode_ms_per_user": result["decode_ms_per_user"],
            }
        )
    columns = [
        "variant",
        "overrides",
        "recall@10",
        "ndcg@10",
        "ndcg@10 gain (95% CI)",
        "best_epoch",
        "train_min",
        "decode_ms_per_user",
    ]
    best_name = max(VARIANTS, key=lambda n: scores[n]["ndcg@10"])
    summary = (
        f"Amazon Beauty, `{args.config}` with each variant's overrides, {args.epochs} epochs, seed "
        f"{base.seed}; validation only: {len(valid):,} sampled users whose last training item was left out "
        f"of training (`eval_unseen_last`), leave-one-out, full ranking, history not masked, beam "
        f"{args.beams}; {threads} thread(s) per run. The test split is not read. Gains are paired 95% "
        f"bootstrap intervals against `{BASELINE}`.\n\n{markdown_table(rows, columns)}\n"
        f"Best on validation NDCG@10: `{best_name}`.\n\n"
        + "".join(
            f"- `{n}` against `{base}`, paired 95%: NDCG@10 gain "
            f"{g['ndcg@10'][0]:+.4f} to {g['ndcg@10'][1]:+.4f}, recall@10 {g['recall@10'][0]:+.4f} to "
            f"{g['recall@10'][1]:+.4f}.\n"
            for (n, base), g in head_gains.items()
        )
        + "\nItem-head decoding on the same users (beam width x re-ranking weight; weight 0 = the beam's "
        f"order):\n\n{markdown_table(sweep, list(sweep[0]))}"
        + f"\nModels merged at decoding (each model's beam of `beams` items, their union ranked by summed "
        f"beam and head scores; gains paired against `{MERGE_BASE}` at its best decoding):\n\n"
        f"{markdown_table(merges, list(merges[0]))}"
    )
    print(summary)
    record(
        "compact_levers_beauty",
        dataset="amazon2014-beauty (validation split)",
        metrics={"variant": best_name, **scores[best_name]},
        baselines={name: scores[name] for name in results if name != best_name},
        wall_times={f"{name}_train": results[name]["train_s"] for name in results},
        summary=summary,
        extra={
            "split": "valid",
            "validation_users": len(valid),
            "paired_gain_ci95_vs_recipe": gains,
            "item_head_paired_gain_ci95": {f"{n} vs {base}": g for (n, base), g in head_gains.items()},
            "item_head_rerank_sweep": sweep,
            "merged_models_sweep": merges,
            "variants": {
                n: {"overrides": r["overrides"], "history": r["history"]} for n, r in results.items()
            },
            "sasrec_config": results[SASREC]["config"],
        },
    )


def rerank_sweep(dataset: SequenceDataset, valid: SplitExamples, folder: Path) -> list[dict[str, float]]:
    """Validation recall/NDCG@10 of the item-head model for each beam width and re-ranking weight (cached).

    One search per width keeps all ``beams`` items with their beam log-probabilities
    (:func:`variant_candidates`); each weight then only re-sorts them, exactly as
    :meth:`CompactRecommender.recommend` does with that ``item_weight``.
    ``candidate_recall`` is how often the target is among the ``beams`` items at all (the ceiling any
    re-ranking of them has). A cached sweep is extended with the widths it lacks.
    """
    path = folder / "rerank_sweep.json"
    rows = read_json(path) if path.is_file() else []
    done = {(r["beams"], r["item_weight"]) for r in rows if "candidate_recall" in r}
    missing = [b for b in RERANK_BEAMS if any((b, w) not in done for w in RERANK_WEIGHTS)]
    if not missing:
        return [r for r in rows if r["beams"] in RERANK_BEAMS and r["item_weight"] in RERANK_WEIGHTS]
    rows = [r for r in rows if r["beams"] not in missing and "candidate_recall" in r]
    for beams in missing:
        found = variant_candidates(dataset, valid, folder, beams)
        for weight in RERANK_WEIGHTS:
            lists, candidate_recall = merged_lists([found], weight, valid.targets)
            hits = per_user_hits(lists, valid.targets)
            rows.append(
                {
                    "beams": beams,
                    "item_weight": weight,
                    **{m: float(v.mean()) for m, v in hits.items()},
                    "candidate_recall": candidate_recall,
                    "search_ms_per_user": found["search_ms_per_user"],
                }
            )
        atomic_write_json(path, rows)
    return sorted(rows, key=lambda r: (r["beams"], r["item_weight"]))


def merge_sweep(
    dataset: SequenceDataset, valid: SplitExamples, work_dir: Path, sweep: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Validation recall/NDCG@10 of each of ``MERGES`` per beam width and head weight, with the paired NDCG@10
    gain over ``MERGE_BASE`` at its best decoding in ``sweep``. Candidates are searched once per model and
    width (cached in its folder), then merged exactly as :meth:`MultiChannelRecommender.recommend` does."""

    @functools.cache  # a model's candidates serve several merges: read each cache once
    def found_by(name: str, beams: int) -> dict[str, Any]:
        return variant_candidates(dataset, valid, work_dir / folder_name(name), beams)

    best = max((r for r in sweep if r["variant"] == MERGE_BASE), key=lambda r: r["ndcg@10"])
    base = found_by(MERGE_BASE, best["beams"])
    base_top, _ = merged_lists([base], best["item_weight"])
    base_hits = per_user_hits(base_top, valid.targets)
    rows = []
    for name, variants in MERGES.items():
        for beams in MERGE_BEAMS:
            found = [found_by(v, beams) for v in variants]
            for weight in MERGE_WEIGHTS:
                top, candidate_recall = merged_lists(found, weight, valid.targets)
                hits = per_user_hits(top, valid.targets)
                gain = bootstrap_interval(hits["ndcg@10"] - base_hits["ndcg@10"])
                rows.append(
                    {
                        "merge": name,
                        "models": len(variants),
                        "beams": beams,
                        "item_weight": weight,
                        **{m: float(v.mean()) for m, v in hits.items()},
                        "ndcg@10 gain (95% CI)": f"[{gain[0]:+.4f}, {gain[1]:+.4f}]",
                        "candidate_recall": candidate_recall,
                        "search_ms_per_user": sum(f["search_ms_per_user"] for f in found),
                    }
                )
    return rows


def variant_candidates(
    dataset: SequenceDataset, valid: SplitExamples, folder: Path, beams: int
) -> dict[str, Any]:
    """:func:`beam_candidates` of a variant's best model on the validation users, cached in its folder."""
    return beam_candidates(folder / "compact" / "best", valid.histories, dataset.catalog, beams, folder)


def sasrec_reference(
    dataset: SequenceDataset,
    users: np.ndarray,
    valid: SplitExamples,
    work_dir: Path,
    threads: int,
    minutes: float,
) -> dict[str, Any]:
    """SASRec trained without the same users' last training items, its top-10 for them (cached)."""
    path = work_dir / "sasrec_result.json"
    if path.is_file():
        return read_json(path)
    config = SASRecConfig(num_threads=threads, time_budget_s=60 * minutes)
    t = time.perf_counter()
    model = train_sasrec(dataset.without_last_training_item(users), config, output_dir=work_dir / "sasrec")
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    top, _ = model.recommend(valid.histories, 10)
    result = {
        "overrides": "SASRec (genrec.baselines), the same training data",
        "config": asdict(config),
        "top": np.asarray(top).tolist(),
        "train_s": train_s,
        "decode_ms_per_user": 1000 * (time.perf_counter() - t) / len(valid),
        "best_epoch": int(np.argmax([h["valid_ndcg@10"] for h in model.history])) + 1,
        "history": model.history,
    }
    atomic_write_json(path, result)
    return result


if __name__ == "__main__":
    main()
