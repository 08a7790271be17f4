"""Popularity and SASRec on Amazon Beauty (P5 split), full ranking over all 12,101 items, all test users.

    python -m bench.seqrec_beauty_baselines                       # train (or resume) SASRec, evaluate, record
    python -m bench.seqrec_beauty_baselines --time-budget-min 25  # cap this call's training wall time
    python -m bench.seqrec_beauty_baselines --save-predictions p.jsonl  # p.sasrec.jsonl, p.popularity.jsonl

SASRec trains on ``seq[:-2]`` with cross-entropy over all items, early-stops on validation NDCG@10
and is tested on the last item. The run checkpoints to ``--output-dir`` after every epoch; calling
again resumes it. Published numbers on this split are printed alongside for orientation (they come
from the TIGER paper, Rajput et al. 2023, Table 2), but the baseline measured in this run is popularity.
Popularity is scored from its ranked list, ties broken by lower item index (the rule every bench uses, see
:mod:`genrec.baselines.popularity`). Every run counts one look at the test split for its SASRec
configuration in ``bench/test_evaluations.json`` and records the count.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path

from bench.common import ROOT, count_test_evaluation, markdown_table, record, save_model_predictions
from genrec.baselines import Popularity, SASRecConfig, train_sasrec
from genrec.data import load_amazon_p5
from genrec.eval import evaluate_lists, evaluate_recommender
from genrec.utils import configure_threads, shared_dataset

NAME = "seqrec_beauty_baselines"
FIGURE = ROOT / "docs" / "img" / f"{NAME}.png"
KS = (5, 10)
# Rajput et al., "Recommender Systems with Generative Retrieval" (TIGER), NeurIPS 2023, Table 2 (Beauty).
PUBLISHED = {
    "SASRec (TIGER paper)": {"recall@5": 0.0387, "recall@10": 0.0605, "ndcg@5": 0.0249, "ndcg@10": 0.0318},
    "TIGER (TIGER paper)": {"recall@5": 0.0454, "recall@10": 0.0648, "ndcg@5": 0.0321, "ndcg@10": 0.0384},
}
COLUMNS = ["model", "recall@5", "recall@10", "ndcg@5", "ndcg@10"]
# SASRecConfig fields that do not change the tested model, left out of the test-evaluation count's key.
NOT_MODEL_SETTINGS = ("num_threads", "time_budget_s")


def parse_args() -> argparse.Namespace:
    d = SASRecConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", type=Path, default=Path("runs/seqrec_beauty_baselines/sasrec"))
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--max-len", type=int, default=d.max_len)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: $GENREC_THREADS)")
    p.add_argument("--time-budget-min", type=float, default=None, help="training wall-time cap for this call")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --output-dir")
    p.add_argument(
        "--save-predictions",
        metavar="PATH",
        type=Path,
        default=None,
        help="write SASRec's and Popularity's test top-10 as JSONL at PATH with the model's name before "
        "the extension (PATH.sasrec.jsonl, PATH.popularity.jsonl)",
    )
    return p.parse_args()


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [h for h in history if "valid_ndcg@10" in h]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(
        [h["epoch"] for h in evals], [h["valid_ndcg@10"] for h in evals], marker=".", label="valid NDCG@10"
    )
    ax.plot(
        [h["epoch"] for h in evals],
        [h["valid_recall@10"] for h in evals],
        marker=".",
        label="valid Recall@10",
    )
    best = max(evals, key=lambda h: h["valid_ndcg@10"])
    ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best epoch {best['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation metric (full ranking)")
    ax2 = ax.twinx()
    ax2.plot(
        [h["epoch"] for h in history], [h["loss"] for h in history], color="tab:red", alpha=0.4, label="loss"
    )
    ax2.set_ylabel("training cross-entropy", color="tab:red")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("SASRec (CE over all items) on Beauty")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def timed_eval(model, examples, **kw) -> tuple[dict[str, float], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = evaluate_recommender(model, examples, ks=KS, **kw)
    return metrics, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    threads = configure_threads(args.threads)
    config = SASRecConfig(
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        max_len=args.max_len,
        dropout=args.dropout,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        num_threads=threads,
        time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None,
    )
    start = time.perf_counter()
    dataset = load_amazon_p5(shared_dataset("amazon2014-beauty"))
    load_s = time.perf_counter() - start
    test = dataset.test_examples()
    print(dataset)

    start = time.perf_counter()
    popularity = Popularity().fit(dataset)
    pop_fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pop_top, _ = popularity.recommend(test.histories, 10)
    pop = evaluate_lists(pop_top, test.targets, dataset.num_items, KS)
    pop_eval_s = time.perf_counter() - start

    start = time.perf_counter()
    model = train_sasrec(dataset, config, output_dir=args.output_dir, resume=not args.fresh)
    session_train_s = time.perf_counter() - start
    history = model.history
    sas, sas_eval_s, sas_eval_cpu_s = timed_eval(model, test)
    sas_excl, _, _ = timed_eval(model, test, exclude_history=True)
    tested = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_MODEL_SETTINGS}
    test_evaluations = count_test_evaluation(NAME, tested)
    saved: dict[str, str | None] = {}
    if args.save_predictions is not None:
        sas_top, _ = model.recommend(test.histories, 10)
        for name, lists in (("SASRec", sas_top), ("Popularity", pop_top)):
            saved[name] = save_model_predictions(
                args.save_predictions, name, test.users, lists, dataset.catalog
            )
    best = max((h for h in history if "valid_ndcg@10" in h), key=lambda h: h["valid_ndcg@10"])
    early_stopped = len(history) - best["epoch"] >= config.patience * config.eval_every
    finished = early_stopped or len(history) >= config.epochs
    plot_history(history, FIGURE)

    rows = [
        {"model": "Popularity (this run)", **pop},
        {"model": f"SASRec (this run, epoch {best['epoch']})", **sas},
        *({"model": name, **m} for name, m in PUBLISHED.items()),
    ]
    ratios = {f"{k}_vs_popularity": sas[k] / pop[k] for k in sas}
    ratios.update({f"{k}_vs_published_sasrec": sas[k] / PUBLISHED["SASRec (TIGER paper)"][k] for k in sas})
    total_train_s = sum(h["train_s"] + h.get("eval_s", 0.0) for h in history)
    table = markdown_table(rows, COLUMNS)
    print(table)
    print(
        f"SASRec / Popularity: R@10 x{ratios['recall@10_vs_popularity']:.2f}, "
        f"N@10 x{ratios['ndcg@10_vs_popularity']:.2f}; SASRec / published SASRec: "
        f"R@10 x{ratios['recall@10_vs_published_sasrec']:.2f}, "
        f"N@10 x{ratios['ndcg@10_vs_published_sasrec']:.2f}"
    )
    print(f"test evaluation, all {len(test)} users x {dataset.num_items} items: {sas_eval_s:.1f}s wall")

    status = (
        "early-stopped"
        if early_stopped
        else "reached --epochs"
        if finished
        else "stopped by the time budget; rerun the same command to resume"
    )
    summary = f"""
Amazon Beauty (P5 split, {dataset.num_users:,} users, {dataset.num_items:,} items), leave-one-out,
full ranking over all items, **all {len(test):,} test users**, history not excluded; SASRec's scores
count ties pessimistically, Popularity breaks them by lower item index.
SASRec: {config.layers} layers, hidden {config.hidden}, {config.heads} head(s), dropout {config.dropout},
max_len {config.max_len}, lr {config.lr}, batch {config.batch_size}, cross-entropy over all items;
{len(history)} epochs ({status}), best validation NDCG@10 at epoch {best["epoch"]}.

{table}
SASRec / Popularity (measured in this run): Recall@10 ×{ratios["recall@10_vs_popularity"]:.2f},
NDCG@10 ×{ratios["ndcg@10_vs_popularity"]:.2f}. SASRec / published SASRec: Recall@10
×{ratios["recall@10_vs_published_sasrec"]:.2f}, NDCG@10 ×{ratios["ndcg@10_vs_published_sasrec"]:.2f}.
With history items excluded from the ranking SASRec gets Recall@10 {sas_excl["recall@10"]:.4f},
NDCG@10 {sas_excl["ndcg@10"]:.4f}.

Wall times: SASRec training {total_train_s / 60:.1f} min in total over all sessions
({session_train_s / 60:.1f} min in this call, {threads} torch threads, CPU shared with other jobs);
test evaluation of all {len(test):,} users × {dataset.num_items:,} items {sas_eval_s:.1f} s wall
({sas_eval_cpu_s:.1f} s CPU); popularity evaluation {pop_eval_s:.1f} s. Test split scored
{test_evaluations["this_config"]} time(s) with this SASRec configuration, {test_evaluations["all_configs"]}
with any (counted since the counter was added).

![SASRec validation curve](img/{FIGURE.name})
"""
    record(
        NAME,
        dataset=f"amazon2014-beauty (P5 split, {dataset.num_users} users, {dataset.num_items} items)",
        metrics={"sasrec": sas, "sasrec_exclude_history": sas_excl, "popularity": pop, "ratios": ratios},
        baselines={"popularity": pop, **PUBLISHED},
        wall_times={
            "load_dataset": load_s,
            "popularity_fit": pop_fit_s,
            "popularity_eval_all_users": pop_eval_s,
            "sasrec_train_total": total_train_s,
            "sasrec_train_this_call": session_train_s,
            "sasrec_eval_all_users": sas_eval_s,
            "sasrec_eval_all_users_cpu": sas_eval_cpu_s,
        },
        summary=summary,
        command="python -m bench.seqrec_beauty_baselines " + shlex.join(sys.argv[1:]),
        extra={
            "sasrec_config": dataclasses.asdict(config),
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "finished": finished,
            "history": history,
            "figure": str(FIGURE.relative_to(ROOT)),
            "test_evaluations": test_evaluations,
            **({"predictions": saved} if saved else {}),
        },
    )


if __name__ == "__main__":
    main()
