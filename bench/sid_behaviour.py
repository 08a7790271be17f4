"""Do behaviour-aware semantic IDs help? The same compact SID model on text-only vs text + behaviour SIDs.

Validation only (leave-one-out, full ranking, history not masked): this is how the SID setting of the
recipes was chosen, so the test split is never read. Behaviour = PPMI-SVD co-occurrence embeddings of the
training sequences (``sid.modalities: [text, behaviour]``), fused with the MiniLM text embedding.

    python -m bench.sid_behaviour --dataset ml100k                 # ~12 CPU min
    python -m bench.sid_behaviour --dataset beauty --epochs 6      # ~40 CPU min

Each variant trains with the same schedule and seed and is then scored once on the validation users;
the (text + behaviour) - (text-only) difference gets a paired 95% bootstrap interval. A rerun resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import markdown_table, per_user_hits, record
from bench.seqrec_ml100k_llm import COMPACT as ML100K_ARCHITECTURE
from genrec.data import SequenceDataset, load_dataset
from genrec.eval import bootstrap_interval, evaluate_lists
from genrec.model.compact import CompactRecommender, CompactTrainingConfig, train_compact
from genrec.sid import SemanticIDSpec, load_or_build_semantic_ids
from genrec.utils import atomic_write_json, configure_threads, read_json

VARIANTS = {"text-only": ["text"], "text + behaviour": ["text", "behaviour"]}
ML100K_COMPACT = CompactTrainingConfig(  # the compact baseline of bench.seqrec_ml100k_llm, 10 epochs
    compact=ML100K_ARCHITECTURE, epochs=10, batch_size=64, learning_rate=2e-3, warmup_steps=50
)
SETTINGS = {
    "ml100k": {"codebook_size": 32, "eval_users": 0},  # as recipes/ml100k_smollm2_lora.yaml
    "beauty": {"codebook_size": 256, "eval_users": 2000},  # as bench.seqrec_beauty_compact
}


def load(name: str) -> tuple[SequenceDataset, CompactTrainingConfig]:
    if name == "ml100k":
        return load_dataset("ml100k"), ML100K_COMPACT
    with open("recipes/compact_beauty.yaml", encoding="utf-8") as fh:
        return load_dataset("beauty"), CompactTrainingConfig.from_dict(yaml.safe_load(fh))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(SETTINGS), default="ml100k")
    p.add_argument("--epochs", type=int, default=None, help="default: 10 (ml100k), the recipe's (beauty)")
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    work = args.work_dir or Path(f"runs/sid_behaviour_{args.dataset}")
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state: dict[str, Any] = read_json(state_path) if state_path.is_file() else {}
    settings = SETTINGS[args.dataset]
    dataset, base = load(args.dataset)
    config = dataclasses.replace(
        base,
        epochs=args.epochs or base.epochs,
        eval_users=settings["eval_users"],  # per-epoch early-stopping sample
        patience=10**6,  # every variant runs the full schedule
        max_minutes=None,
        num_threads=threads,
    )
    valid = dataset.valid_examples()
    for name, modalities in VARIANTS.items():
        if name in state:
            continue
        spec = SemanticIDSpec(modalities=modalities, codebook_size=settings["codebook_size"])
        folder = work / name.replace(" + ", "_")
        sid = load_or_build_semantic_ids(dataset, folder / "sid", spec)
        t = time.perf_counter()
        train_compact(
            dataset,
            [sid.item_tokens(i) for i in range(dataset.num_items)],
            dataclasses.replace(config, output_dir=str(folder / "compact")),
        )
        train_s = time.perf_counter() - t
        best = CompactRecommender.from_pretrained(folder / "compact" / "best", catalog=dataset.catalog)
        t = time.perf_counter()
        top, _ = best.recommend(valid.histories, k=10, num_beams=args.beams, batch_size=64)
        state[name] = {
            "top": np.asarray(top).tolist(),
            "train_s": train_s,
            "decode_ms_per_user": 1000 * (time.perf_counter() - t) / len(valid),
            "collision_rate": sid.diagnostics["collision_rate"],
            "history": read_json(folder / "compact" / "trainer_state.json")["history"],
        }
        atomic_write_json(state_path, state)

    scores, hits = {}, {}
    for name in VARIANTS:
        top = np.asarray(state[name]["top"])
        scores[name] = evaluate_lists(top, valid.targets, dataset.num_items, (5, 10))
        hits[name] = per_user_hits(top, valid.targets)
    ours, base_name = "text + behaviour", "text-only"
    gain = {m: list(bootstrap_interval(hits[ours][m] - hits[base_name][m])) for m in ("recall@10", "ndcg@10")}
    rows = [
        {
            "SIDs": name,
            **scores[name],
            "collision_rate": state[name]["collision_rate"],
            "train_min": state[name]["train_s"] / 60,
            "decode_ms_per_user": state[name]["decode_ms_per_user"],
        }
        for name in VARIANTS
    ]
    columns = [
        "SIDs",
        "recall@10",
        "ndcg@10",
        "coverage@10",
        "collision_rate",
        "train_min",
        "decode_ms_per_user",
    ]
    summary = (
        f"{dataset.name}: compact SID model, {config.epochs} epochs each, same seed; scored on all "
        f"{len(valid)} validation users (leave-one-out, full ranking, history not masked, "
        f"beam {args.beams}); "
        f"{threads} thread(s). The test split is not read.\n\n{markdown_table(rows, columns)}\n"
        f"Paired 95% bootstrap interval of (text + behaviour) - (text-only): recall@10 "
        f"[{gain['recall@10'][0]:+.4f}, {gain['recall@10'][1]:+.4f}], ndcg@10 "
        f"[{gain['ndcg@10'][0]:+.4f}, {gain['ndcg@10'][1]:+.4f}]."
    )
    print(summary)
    record(
        f"sid_behaviour_{args.dataset}",
        dataset=f"{dataset.name} (validation split)",
        metrics={**scores[ours], "collision_rate": state[ours]["collision_rate"]},
        baselines={base_name: {**scores[base_name], "collision_rate": state[base_name]["collision_rate"]}},
        wall_times={f"{n}_train": state[n]["train_s"] for n in VARIANTS},
        summary=summary,
        extra={
            "split": "valid",
            "paired_gain_ci95": gain,
            "epochs": config.epochs,
            "history": {n: state[n]["history"] for n in VARIANTS},
        },
    )


if __name__ == "__main__":
    main()
