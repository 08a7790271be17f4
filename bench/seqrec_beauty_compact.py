"""Compact SID Llama vs SASRec and Popularity on all of Amazon Beauty (leave-one-out, all 22,363 test users).

The compact model (``recipes/compact_beauty.yaml``, with each of its ``channels``) is trained here on whole
user sequences and decoded with trie-constrained beam search, the channels' beams merged
(:mod:`genrec.model.channels`); SASRec and Popularity are trained in the same run on the same split.
TIGER's published numbers are printed beside them for reference (not re-run).

The decoding (beam width x item-head weight) is chosen on the recipe's validation users, whose last training
item the models never trained on (``eval_unseen_last``), from one search per channel and width; the test
split is then decoded once, with that choice.

    python -m bench.seqrec_beauty_compact [--config recipes/compact_beauty.yaml] [--threads 2]
        [--beams 40 80 --item-weight 1 2 4]  # the decodings validation chooses among
        [--save-predictions runs/preds.jsonl]  # -> runs/preds.{compact-sid-llama,sasrec,popularity}.jsonl

Re-running resumes every model from ``--work-dir`` (default ``runs/seqrec_beauty_compact``). Popularity
breaks ties by lower item index (see :mod:`genrec.baselines.popularity`); every run counts one look at the
test split in ``bench/test_evaluations.json`` and records the count.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from bench.common import (
    beam_candidates,
    count_test_evaluation,
    markdown_table,
    merged_lists,
    per_user_hits,
    record,
    save_model_predictions,
)
from genrec.baselines import Popularity, SASRecConfig, train_sasrec
from genrec.data import SequenceDataset, load_amazon_p5
from genrec.eval import (
    bootstrap_interval,
    catalog_coverage,
    evaluate_lists,
    evaluate_recommender,
    valid_item_rate,
)
from genrec.model.channels import channel_configs, train_channels
from genrec.model.compact import CompactTrainingConfig, validation_users
from genrec.utils import configure_threads, read_json, shared_dataset

# TIGER (Rajput et al., NeurIPS 2023), Table 2, Beauty.
TIGER = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}
KS = (5, 10)
# Training settings that do not change the tested model, left out of the test-evaluation count's key.
NOT_MODEL_SETTINGS = ("output_dir", "num_threads", "resume", "max_minutes")
# Settings added after counting began, left out of the key at their defaults so that the configurations
# counted before them keep their keys.
LATER_SETTINGS_AT_DEFAULT = (("channels", []), ("train_windows", False), ("eval_seed", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="recipes/compact_beauty.yaml")
    parser.add_argument("--work-dir", default="runs/seqrec_beauty_compact")
    parser.add_argument(
        "--beams", type=int, nargs="+", default=[40, 80], help="beam widths validation chooses among"
    )
    parser.add_argument(
        "--item-weight",
        type=float,
        nargs="+",
        default=[1.0, 2.0, 4.0],
        help="weights of the item head's log-probability beside the beams' (0 = beam order) validation "
        "chooses among",
    )
    parser.add_argument("--sasrec-epochs", type=int, default=200)
    parser.add_argument("--sasrec-minutes", type=float, default=15.0, help="SASRec training budget per call")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epoch count")
    parser.add_argument(
        "--save-predictions",
        metavar="PATH",
        default=None,
        help="write each model's test top-10 as JSONL at PATH with the model's name before the extension",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    work = Path(args.work_dir)
    with open(args.config, encoding="utf-8") as fh:
        config = CompactTrainingConfig.from_dict(yaml.safe_load(fh))
    config.output_dir = str(work / "compact")
    config.num_threads = threads
    if args.epochs is not None:
        config.epochs = args.epochs

    walls: dict[str, float] = {}
    t = time.perf_counter()
    dataset = load_amazon_p5(shared_dataset("amazon2014-beauty"))
    walls["data"] = time.perf_counter() - t
    test = dataset.test_examples()
    rows, results = [], {}

    t = time.perf_counter()
    popularity = Popularity().fit(dataset)
    pop_top, _ = popularity.recommend(test.histories, 10)
    results["Popularity"] = evaluate_lists(pop_top, test.targets, dataset.num_items, KS)
    predictions = {"Popularity": pop_top}
    walls["popularity"] = time.perf_counter() - t

    t = time.perf_counter()
    compact = train_channels(dataset, config)  # each channel's SIDs, then its model
    walls["compact_sids_and_train_this_call"] = time.perf_counter() - t  # ~0 when resuming a finished run
    t = time.perf_counter()
    validation = choose_decoding(dataset, config, args.beams, args.item_weight)
    walls["compact_validation_sweep"] = time.perf_counter() - t
    beams, item_weight = validation["chosen"]["beams"], validation["chosen"]["item_weight"]
    t = time.perf_counter()
    top, _ = compact.recommend(
        test.histories, k=10, num_beams=beams, batch_size=64, progress=True, item_weight=item_weight
    )
    walls["compact_test"] = time.perf_counter() - t
    predictions["Compact SID Llama"] = top
    t = time.perf_counter()
    sasrec_config = SASRecConfig(
        epochs=args.sasrec_epochs, num_threads=threads, time_budget_s=60 * args.sasrec_minutes
    )
    sasrec = train_sasrec(dataset, sasrec_config, output_dir=work / "sasrec")
    walls["sasrec_train"] = time.perf_counter() - t
    t = time.perf_counter()
    sas_top, _ = sasrec.recommend(test.histories, 10)
    results["SASRec"] = {
        **evaluate_recommender(sasrec, test, KS),
        "coverage@10": catalog_coverage(sas_top, dataset.num_items),
        "valid_item_rate": valid_item_rate(sas_top, dataset.num_items),
    }
    walls["sasrec_test"] = time.perf_counter() - t
    predictions["SASRec"] = sas_top
    training = {
        k: v
        for k, v in asdict(config).items()
        if k not in NOT_MODEL_SETTINGS and (k, v) not in LATER_SETTINGS_AT_DEFAULT
    }
    tested = {
        "compact_training": training,
        "beams": beams,
        "item_weight": item_weight,
        "sasrec_epochs": args.sasrec_epochs,
    }
    test_evaluations = count_test_evaluation("seqrec_beauty_compact", tested)
    saved = {
        name: save_model_predictions(args.save_predictions, name, test.users, lists, dataset.catalog)
        for name, lists in predictions.items()
    }

    states = [read_json(Path(c.output_dir) / "trainer_state.json") for c in channel_configs(config)]
    tokens_per_s = float(np.mean([h["tokens_per_s"] for s in states for h in s["history"]]))
    walls["compact_train_epochs"] = float(sum(h["train_s"] for s in states for h in s["history"]))
    per_user = per_user_hits(top, test.targets)
    results["Compact SID Llama (ours)"] = {
        **evaluate_lists(top, test.targets, dataset.num_items, KS),
        "recall@10_ci95": list(bootstrap_interval(per_user["recall@10"])),
        "ndcg@10_ci95": list(bootstrap_interval(per_user["ndcg@10"])),
        "test_evaluations": test_evaluations["this_config"],
    }
    results["TIGER (published)"] = dict(TIGER)

    columns = ["model", "recall@5", "ndcg@5", "recall@10", "ndcg@10", "coverage@10", "valid_item_rate"]
    for name, m in results.items():
        rows.append({"model": name, **m})
    ours = results["Compact SID Llama (ours)"]
    ratios = {
        f"vs_{base}": {
            k: ours[k] / results[base][k] if results[base][k] else float("nan")
            for k in ("recall@10", "ndcg@10")
        }
        for base in ("SASRec", "Popularity", "TIGER (published)")
    }
    test_ms = 1000 * walls["compact_test"] / len(test)
    head = compact.channels[0].model.has_item_head
    rerank = f" re-ranked by the item head (weight {item_weight:g})" if head else ""
    merged = f"{len(states)} channels merged, " if len(states) > 1 else ""
    epochs = ", ".join(f"{s['epoch']} epochs (best {s['best_epoch']})" for s in states)
    summary = (
        f"Amazon Beauty, {dataset.num_users:,} users, {dataset.num_items:,} items, leave-one-out, all "
        f"{len(test):,} test users, full catalog. Compact model: "
        f"{merged}{compact.num_parameters() / 1e6:.2f}M params, "
        f"{compact.channels[0].tokens_per_item}-token RQ-KMeans SIDs, beam {beams}{rerank} (chosen on "
        f"{validation['users']:,} validation users: {validation['chosen']['recall@10']:.4f} / "
        f"{validation['chosen']['ndcg@10']:.4f}), trained "
        f"{epochs} in "
        f"{walls['compact_train_epochs'] / 60:.1f} min of training steps at "
        f"{tokens_per_s:,.0f} tokens/s; test decoding {test_ms:.1f} ms/user. {threads} threads.\n\n"
        f"{markdown_table(rows, columns)}\n"
        f"Ours / SASRec: R@10 x{ratios['vs_SASRec']['recall@10']:.2f}, "
        f"N@10 x{ratios['vs_SASRec']['ndcg@10']:.2f}; "
        f"ours / TIGER (published): R@10 x{ratios['vs_TIGER (published)']['recall@10']:.2f}, "
        f"N@10 x{ratios['vs_TIGER (published)']['ndcg@10']:.2f}. Test split scored "
        f"{test_evaluations['this_config']} time(s) with this configuration, "
        f"{test_evaluations['all_configs']} with any (counted since the counter was added).\n\n"
        f"The decodings on validation ({validation['users']:,} users"
        f"{', their last training item never trained on' if validation['eval_unseen_last'] else ''}; the "
        f"merged channels' best NDCG@10 is what the test split was decoded with):\n\n"
        f"{markdown_table(validation['sweep'], list(validation['sweep'][0]))}"
        + (
            f"\nMerged at the chosen decoding against channel 0 alone at its best, paired NDCG@10 gain "
            f"{gain[0]:+.4f} to {gain[1]:+.4f}.\n"
            if (gain := validation.get("ndcg@10_gain_vs_channel_0_ci95"))
            else ""
        )
    )
    print(summary)
    record(
        "seqrec_beauty_compact",
        dataset="amazon2014-beauty",
        metrics=ours,
        baselines={k: v for k, v in results.items() if k != "Compact SID Llama (ours)"},
        wall_times=walls,
        summary=summary,
        extra={
            "ratios": ratios,
            "compact_config": [s["config"] for s in states],  # one per channel
            "sasrec_config": asdict(sasrec_config),
            "sasrec_epochs_trained": len(sasrec.history),
            "training_history": [s["history"] for s in states],
            "tokens_per_s": tokens_per_s,
            "test_ms_per_user": test_ms,
            "beams": beams,
            "item_weight": item_weight if head else None,
            "validation": validation,
            "test_evaluations": test_evaluations,
            **({"predictions": saved} if args.save_predictions else {}),
        },
    )


def choose_decoding(
    dataset: SequenceDataset, config: CompactTrainingConfig, beams: list[int], weights: list[float]
) -> dict:
    """Validation recall/NDCG@10 of every beam width x head weight, for the merged channels and for each
    channel alone, and the merged decoding with the best NDCG@10 (with its paired gain over channel 0
    alone at channel 0's best). One search per channel and width, cached in the channel's folder."""
    users = validation_users(dataset, config)
    valid = dataset.valid_examples().subset(users)
    folders = [Path(c.output_dir) for c in channel_configs(config)]
    rows, hits = [], {}
    for width in beams:
        found = [beam_candidates(f / "best", valid.histories, dataset.catalog, width, f) for f in folders]
        models = {
            "merged": found,
            **({f"channel {c}": [f] for c, f in enumerate(found)} if len(found) > 1 else {}),
        }
        for name, channels in models.items():
            for weight in weights:
                top, candidate_recall = merged_lists(channels, weight, valid.targets)
                hits[name, width, weight] = per_user_hits(top, valid.targets)
                rows.append(
                    {
                        "model": name,
                        "beams": width,
                        "item_weight": weight,
                        **{m: float(v.mean()) for m, v in hits[name, width, weight].items()},
                        "candidate_recall": candidate_recall,
                        "search_ms_per_user": sum(c["search_ms_per_user"] for c in channels),
                    }
                )
    chosen = max((r for r in rows if r["model"] == "merged"), key=lambda r: r["ndcg@10"])
    result = {
        "users": len(valid),
        "eval_unseen_last": config.eval_unseen_last,
        "sweep": rows,
        "chosen": chosen,
    }
    if len(folders) > 1:
        alone = max((r for r in rows if r["model"] == "channel 0"), key=lambda r: r["ndcg@10"])
        merged = hits["merged", chosen["beams"], chosen["item_weight"]]["ndcg@10"]
        single = hits["channel 0", alone["beams"], alone["item_weight"]]["ndcg@10"]
        result["channel_0_best"] = alone
        result["ndcg@10_gain_vs_channel_0_ci95"] = list(bootstrap_interval(merged - single))
    logging.getLogger(__name__).info("decoding chosen on validation: %s", chosen)
    return result


if __name__ == "__main__":
    main()
