"""``genrec demo``: data → embeddings → semantic IDs → recommenders → explanations → thumbnails.

Everything runs on the deterministic synthetic catalog (labelled synthetic throughout), so the demo
needs no network and no research data. Each stage adds a section to ``report.md`` and its numbers to
``metrics.json``; stage times are recorded in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data import SequenceDataset, dataset_stats, make_synthetic, plot_length_histogram
from genrec.demo.explain import ExplanationBudget, explanation_stage
from genrec.demo.recommend import RecommenderBudget, baseline_stage, compact_stage, llm_stage
from genrec.demo.report import Report, metrics_table, plot_code_usage
from genrec.demo.thumbnails import ThumbnailBudget, thumbnail_stage
from genrec.utils import atomic_write_json, configure_threads, get_logger, seed_everything

logger = get_logger(__name__)
METRICS = ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]


@dataclass
class DemoConfig:
    output_dir: Path = Path("demo_output")
    quick: bool = False  # smaller catalog and budgets, for tests and a first look
    seed: int = 0
    threads: int | None = None  # None: chosen per stage from the CPUs free at that moment

    @property
    def num_users(self) -> int:
        return 300 if self.quick else 1000

    @property
    def num_items(self) -> int:
        return 150 if self.quick else 400

    @property
    def recommenders(self) -> RecommenderBudget:
        if self.quick:
            return RecommenderBudget(sasrec_epochs=15, compact_epochs=15, llm_steps=8, eval_users=60)
        return RecommenderBudget(sasrec_epochs=25, compact_epochs=16, llm_steps=20, eval_users=200)

    @property
    def explanations(self) -> ExplanationBudget:
        if self.quick:
            return ExplanationBudget(train_steps=3, train_users=20, eval_pairs=4)
        return ExplanationBudget(train_steps=10, train_users=60, eval_pairs=12)

    @property
    def thumbnails(self) -> ThumbnailBudget:
        if self.quick:
            return ThumbnailBudget(train_steps=20, batch_size=16, eval_users=12)
        return ThumbnailBudget(train_steps=240, batch_size=32, eval_users=40)


def run_demo(config: DemoConfig) -> Path:
    """Run every stage and return the report path."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    report = Report("genrec demo (synthetic catalog)", out)
    timings: dict[str, float] = {}
    threads: dict[str, int] = {}

    def timed(name: str, stage: Callable[[int], Any]) -> Any:
        """Run ``stage(threads)``, with threads chosen afresh (another process may have started or stopped
        meanwhile); the stage's trainers use that count, and the report records it."""
        threads[name] = configure_threads(config.threads)
        start = time.perf_counter()
        result = stage(threads[name])
        timings[name] = time.perf_counter() - start
        logger.info("demo stage %-22s %.1fs (%d threads)", name, timings[name], threads[name])
        return result

    seed, budget = config.seed, config.recommenders
    ds = timed("data", lambda n: _data_stage(config, report))
    embeddings = timed("embeddings", lambda n: _embedding_stage(ds, out, report))
    sid = timed("semantic ids", lambda n: _sid_stage(ds, config, report))
    rows = timed("baselines", lambda n: baseline_stage(ds, budget, out, seed, n, report))
    compact, recommender = timed(
        "compact recommender", lambda n: compact_stage(ds, sid, budget, out, seed, n, report)
    )
    rows.update(compact)
    rows.update(timed("LLM recommender", lambda n: llm_stage(ds, sid, budget, out, seed, n, report)))
    explanations = timed(
        "explanations",
        lambda n: explanation_stage(ds, sid, recommender, config.explanations, out, seed, n, report),
    )
    thumbnails = timed(
        "thumbnails", lambda n: thumbnail_stage(ds, embeddings, out, config.thumbnails, seed, report)
    )
    report.add(
        "Metrics",
        metrics_table(rows, [*METRICS, "valid_item_rate", "coverage@10"])
        + f"\nFull ranking, leave-one-out, the same first {budget.eval_users} test users for every model, "
        "each user's own items excluded (no synthetic user buys an item twice).",
    )
    total = sum(timings.values())
    report.add(
        "Stage times",
        metrics_table(
            {k: {"seconds": v, "threads": threads[k]} for k, v in timings.items()}, ["seconds", "threads"]
        )
        + f"\nTotal {total:.0f} s.",
    )
    atomic_write_json(
        out / "metrics.json",
        {
            "metrics": rows,
            "semantic_ids": sid.diagnostics,
            "explanations": explanations,
            "thumbnails": thumbnails,
            "stage_seconds": timings,
            "stage_threads": threads,
            "total_seconds": total,
            "quick": config.quick,
            "synthetic": True,
        },
    )
    return report.write()


def _data_stage(config: DemoConfig, report: Report) -> SequenceDataset:
    ds = make_synthetic(
        num_users=config.num_users,
        num_items=config.num_items,
        seed=config.seed,
        image_dir=config.output_dir / "images",
    )
    stats = dataset_stats(ds)
    hist = plot_length_histogram(ds, config.output_dir / "sequence_lengths.png")
    length = stats["length"]
    report.add(
        "Data",
        f"**Synthetic** catalog generated by `genrec.data.make_synthetic` (seed {config.seed}): "
        f"{stats['users']} users, {stats['items']} items, {stats['interactions']} interactions; "
        f"sequence length min {length['min']}, median {length['median']}, max {length['max']}. Users follow "
        "latent tastes for categories, brands, styles and price bands, and habits (follow-up items, category "
        "transitions); item text and thumbnails show category, brand and style, so content carries the "
        "tastes.\n\n" + report.image(hist, "sequence-length histogram"),
    )
    return ds


def _embedding_stage(ds: SequenceDataset, out: Path, report: Report) -> np.ndarray:
    from genrec.embed import encode_items
    from genrec.embed.text import render_item_texts

    emb = encode_items(ds.catalog, cache_dir=out / "cache", show_progress=False)
    example = render_item_texts([ds.catalog[0]], None)[0]
    report.add(
        "Item embeddings",
        f"all-MiniLM-L6-v2 over each item's rendered text ({emb.shape[0]} × {emb.shape[1]}). "
        f"Item 0 renders as:\n\n> {example}",
    )
    return emb


def _sid_stage(ds: SequenceDataset, config: DemoConfig, report: Report):
    from genrec.sid import SemanticIDSpec, build_dataset_semantic_ids

    # Item text (title, brand, category, price, style) fused with training co-occurrence, as the recipes do.
    spec = SemanticIDSpec(
        levels=3, codebook_size=16 if config.quick else 32, modalities=["text", "behaviour"], seed=config.seed
    )
    # The embedding stage's cache: the text is not encoded twice.
    sid = build_dataset_semantic_ids(ds, spec, show_progress=False, cache_dir=config.output_dir / "cache")
    sid.save_pretrained(config.output_dir / "semantic_ids")
    diag = sid.diagnostics
    png = plot_code_usage(sid.codes, sid.codebook_sizes, config.output_dir / "code_usage.png")
    examples = "\n".join(f"- {''.join(sid.item_tokens(i))} — {ds.catalog[i].title}" for i in range(3))
    report.add(
        "Semantic IDs",
        f"Residual k-means over item text fused with training co-occurrence, {spec.levels} levels × "
        f"{spec.codebook_size} codes + a de-dup level. Collision rate before de-dup: "
        f"{diag['collision_rate']:.3f}; largest collision group: {diag['largest_group']}.\n\n{examples}\n\n"
        + report.image(png, "per-level code usage"),
    )
    return sid
