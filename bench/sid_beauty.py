"""Semantic IDs on Amazon Beauty: MiniLM embeddings, RQ-KMeans vs RQ-VAE, LSH as the collision baseline.

    python -m bench.sid_beauty [--threads N] [--rqvae-epochs 40] [--cache-dir DIR]

Embeds all 12,101 Beauty items (uncached, then again from the dedicated cache), builds 3x256
semantic IDs with RQ-KMeans (plain and with the balanced last level) and RQ-VAE, and compares them
with random-hyperplane LSH codes of the same shape (8 bits per level) on wall time, collision rate
before de-dup, largest collision group, per-level utilization/perplexity, code-length distribution
and first-level category purity. Writes bench/results/sid_beauty.json, a section of
docs/benchmarks.md and docs/img/sid_beauty_code_usage.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, markdown_table, record
from genrec.data import load_amazon_p5
from genrec.embed import encode_items
from genrec.sid import SemanticIDs, build_semantic_ids, category_purity, code_diagnostics, item_labels
from genrec.utils import configure_threads, shared_dataset

PLOT = ROOT / "docs" / "img" / "sid_beauty_code_usage.png"


def lsh_codes(x: np.ndarray, levels: int, bits: int, seed: int) -> np.ndarray:
    """Random-hyperplane LSH: level ``l`` packs the signs of ``bits`` random projections into one code."""
    rng = np.random.default_rng(seed)
    planes = rng.standard_normal((x.shape[1], levels * bits)).astype(np.float32)
    signs = (x @ planes > 0).reshape(len(x), levels, bits).astype(np.int64)
    return (signs << np.arange(bits)).sum(-1)


def summarise(diag: dict[str, Any], purity: float, seconds: float) -> dict[str, Any]:
    return {
        "wall_s": round(seconds, 2),
        "collision_rate": diag["collision_rate"],
        "largest_group": diag["largest_group"],
        "unique_codes": diag["num_unique_codes"],
        "items_needing_dedup_token": diag["code_length_distribution"][diag["levels"] + 1],
        "utilization": [round(lv["utilization"], 4) for lv in diag["per_level"]],
        "perplexity": [round(lv["perplexity"], 1) for lv in diag["per_level"]],
        "category_purity_level1": round(purity, 4),
        "code_length_distribution": diag["code_length_distribution"],
        "group_size_distribution": diag["group_size_distribution"],
    }


def plot_usage(codes_by_method: dict[str, np.ndarray], size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = next(iter(codes_by_method.values())).shape[1]
    fig, axes = plt.subplots(1, levels, figsize=(5 * levels, 3.6), sharey=True)
    for level, ax in enumerate(np.atleast_1d(axes)):
        for name, codes in codes_by_method.items():
            counts = np.sort(np.bincount(codes[:, level], minlength=size))[::-1]
            ax.plot(np.arange(size), counts, label=name, lw=1.4)
        ax.axhline(len(codes) / size, color="grey", ls=":", lw=1, label="uniform")
        ax.set_title(f"level {level + 1}: items per code (sorted)")
        ax.set_xlabel("code rank")
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].set_ylabel("items")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.suptitle("Amazon Beauty (12,101 items), 3x256 semantic IDs: code usage per level")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/faiss threads (default $GENREC_THREADS)"
    )
    parser.add_argument("--cache-dir", default="runs/sid_beauty/embeddings", help="dedicated cache")
    parser.add_argument("--rqvae-epochs", type=int, default=40)
    parser.add_argument("--save-dir", default="runs/sid_beauty", help="where the built IDs are saved")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    load_before = os.getloadavg()

    dataset = load_amazon_p5(shared_dataset("amazon2014-beauty"))
    catalog = dataset.catalog
    cache = Path(args.cache_dir)
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    emb = encode_items(catalog, cache_dir=cache, batch_size=64)
    t_uncached = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb_cached = encode_items(catalog, cache_dir=cache, batch_size=64)
    t_cached = time.perf_counter() - t0
    assert np.array_equal(emb, emb_cached)

    labels = item_labels(catalog)
    levels, size = 3, 256
    results: dict[str, dict[str, Any]] = {}
    codes_for_plot: dict[str, np.ndarray] = {}
    built: dict[str, SemanticIDs] = {}
    for name, kwargs in [
        ("rqkmeans", {"method": "rqkmeans"}),
        ("rqkmeans+balanced", {"method": "rqkmeans", "balanced_last_level": True}),
        ("rqvae", {"method": "rqvae", "epochs": args.rqvae_epochs}),
    ]:
        t0 = time.perf_counter()
        sid = build_semantic_ids(
            emb, levels=levels, codebook_size=size, seed=args.seed, catalog=catalog, **kwargs
        )
        seconds = time.perf_counter() - t0
        semantic = sid.codes[:, :-1]
        diag = {k: v for k, v in sid.diagnostics.items() if k != "before_balancing"}
        results[name] = summarise(diag, category_purity(semantic[:, 0], labels), seconds)
        results[name]["dedup_distribution"] = sid.dedup_distribution()
        codes_for_plot[name] = semantic
        built[name] = sid
        sid.save_pretrained(Path(args.save_dir) / f"beauty_{name.replace('+', '_')}")
    if "balanced_moved_items" in built["rqkmeans+balanced"].diagnostics:
        results["rqkmeans+balanced"]["moved_items"] = built["rqkmeans+balanced"].diagnostics[
            "balanced_moved_items"
        ]

    t0 = time.perf_counter()
    lsh = lsh_codes(emb, levels, 8, args.seed)
    t_lsh = time.perf_counter() - t0
    baselines = {
        "lsh": summarise(code_diagnostics(lsh, [size] * levels), category_purity(lsh[:, 0], labels), t_lsh)
    }
    codes_for_plot["lsh (baseline)"] = lsh
    plot_usage(codes_for_plot, size, PLOT)
    load_after = os.getloadavg()

    rows = [{"method": k, **v} for k, v in {**results, "lsh (baseline)": baselines["lsh"]}.items()]
    for row in rows:
        row["collision vs LSH"] = row["collision_rate"] / max(baselines["lsh"]["collision_rate"], 1e-12)
        row["time vs RQ-KMeans"] = row["wall_s"] / results["rqkmeans"]["wall_s"]
        row["util a/b/c"] = "/".join(f"{u:.2f}" for u in row["utilization"])
        row["ppl a/b/c"] = "/".join(f"{p:.0f}" for p in row["perplexity"])
    table = markdown_table(
        rows,
        [
            "method",
            "wall_s",
            "time vs RQ-KMeans",
            "collision_rate",
            "collision vs LSH",
            "largest_group",
            "items_needing_dedup_token",
            "util a/b/c",
            "ppl a/b/c",
            "category_purity_level1",
        ],
    )
    summary = (
        f"All 12,101 Beauty items embedded with all-MiniLM-L6-v2 (default item template): "
        f"**{t_uncached:.1f} s uncached, {t_cached:.2f} s from the disk cache**. "
        f"3 levels x 256 codes + de-dup level; RQ-VAE {args.rqvae_epochs} epochs on CPU. "
        f"Baseline: random-hyperplane LSH with the same code shape (8 sign bits per level). "
        f"`collision_rate` = fraction of items sharing their full 3-level code with another item "
        f"(before de-dup); category purity = share of items whose top-3 category path is the "
        f"majority one of their first-level code.\n\n{table}\n"
        f"![per-level code usage](img/{PLOT.name})\n\n"
        f"CPU shared with other jobs: 2 cores, {threads} torch/faiss threads, load average "
        f"{load_before[0]:.1f} at start and {load_after[0]:.1f} at the end, so wall times are upper bounds."
    )
    print(summary)
    record(
        "sid_beauty",
        dataset="amazon2014-beauty (12,101 items)",
        metrics=results,
        baselines=baselines,
        wall_times={
            "embed_uncached": t_uncached,
            "embed_cached": t_cached,
            **{f"build_{k}": v["wall_s"] for k, v in results.items()},
            "lsh": t_lsh,
        },
        summary=summary,
        extra={
            "load_average": {"start": load_before, "end": load_after},
            "threads": threads,
            "plot": str(PLOT.relative_to(ROOT)),
        },
    )


if __name__ == "__main__":
    main()
