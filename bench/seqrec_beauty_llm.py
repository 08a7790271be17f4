"""SmolLM2-135M + LoRA (CPU, time-boxed) vs the compact SID Llama, SASRec and Popularity on a Beauty subset.

All four train on the SAME random subset of Amazon Beauty users (full 12,101-item catalog, leave-one-out on
each user's sequence) and are tested on the same test users with full-catalog ranking. The LLM trains
with ``recipes/beauty_smollm2_lora.yaml`` (its epochs, capped at ``--train-minutes`` of training over all
calls); the full-data GPU recipe
(``recipes/beauty_smollm2_qlora_gpu.yaml``) is not run here. Before training, the untrained LLM is scored
twice (step 0): with SID token rows initialised from their items' titles (the default) and from the
vocabulary mean, which shows what the text initialisation gives before any gradient step.

    python -m bench.seqrec_beauty_llm --users 2000 --test-users 1000 --train-minutes 25 --threads 1

Re-running resumes every model from ``--work-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.common import TimeLedger, markdown_table, record
from genrec.baselines import Popularity, SASRecConfig, train_sasrec
from genrec.data import load_amazon_p5
from genrec.eval import evaluate_lists
from genrec.model.compact import CompactTrainingConfig, train_compact
from genrec.train import SFTRecipe, build_recommender, load_or_build_sid, train_sft
from genrec.utils import configure_threads, read_json, shared_dataset
from genrec.utils.checkpoint import TRAINER_STATE, latest_checkpoint

NAME = "seqrec_beauty_llm"
KS = (5, 10)
OURS = "SmolLM2-135M + LoRA (ours)"
STEP0 = {"mean": "vocabulary mean", "text": "item titles"}


@torch.no_grad()
def free_generation_valid_rate(rec, histories: list[np.ndarray], batch_size: int = 16) -> float:
    """Share of greedy UNconstrained answers that are a real catalog item (constrained: 1 by design)."""
    model, tok, sid = rec.model, rec.tokenizer, rec.sid
    levels = len(sid.codebook_sizes)
    valid = 0
    model.eval()
    for start in tqdm(range(0, len(histories), batch_size), desc="free generation", leave=False):
        ids, mask = rec.encode_prompts(histories[start : start + batch_size])
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=levels,
            do_sample=False,
            num_beams=1,
            pad_token_id=tok.pad_token_id,
        )
        for row in out[:, ids.shape[1] :]:
            try:
                codes = sid.parse_tokens(tok.convert_ids_to_tokens(row.tolist()))
            except ValueError:
                continue
            valid += int(sid.lookup(codes[None])[0] >= 0)
    return valid / len(histories)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="recipes/beauty_smollm2_lora.yaml")
    p.add_argument("--work-dir", type=Path, default=Path("runs/seqrec_beauty_llm"))
    p.add_argument("--users", type=int, default=3000, help="random Beauty users to train and test on")
    p.add_argument("--test-users", type=int, default=500, help="first N subset users tested (all models)")
    p.add_argument("--train-minutes", type=float, default=25.0, help="LLM training cap, over all calls")
    p.add_argument("--compact-minutes", type=float, default=5.0)
    p.add_argument("--sasrec-minutes", type=float, default=3.0)
    p.add_argument("--beams", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dry-run", action="store_true", help="print the summary without recording it")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    walls: dict[str, float] = {}

    t = time.perf_counter()
    full = load_amazon_p5(shared_dataset("amazon2014-beauty"))
    users = np.sort(np.random.default_rng(0).choice(full.num_users, args.users, replace=False))
    dataset = full.subset(users.tolist(), name=f"beauty[{args.users} users, seed 0]")
    recipe = SFTRecipe.from_yaml(args.config)
    recipe.override("train.output_dir", str(args.work_dir / "llm"))
    recipe.override("train.save_steps", 50)
    recipe.override("train.num_threads", threads)
    recipe.override("data.eval_users", 0)
    sid = load_or_build_sid(recipe, full)  # SIDs of the whole catalog, built once
    test = dataset.test_examples()
    histories, targets = test.histories[: args.test_users], test.targets[: args.test_users]
    walls["data_and_sids"] = time.perf_counter() - t
    results: dict[str, dict] = {}

    def score(name: str, top: np.ndarray, extra: dict | None = None) -> None:
        results[name] = {**evaluate_lists(top, targets, dataset.num_items, KS), **(extra or {})}

    pop_top, _ = Popularity().fit(dataset).recommend(histories, 10)
    score("Popularity", pop_top)

    def llm_top(rec) -> np.ndarray:
        return np.concatenate(
            [
                rec.recommend(histories[s : s + 16], k=10, num_beams=args.beams, batch_size=16)[0]
                for s in tqdm(range(0, len(histories), 16), desc="LLM decode")
            ]
        )

    for sid_init in ("mean", "text"):
        t = time.perf_counter()
        step0 = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, sid_init=sid_init))
        untrained = build_recommender(step0, dataset.catalog, sid)
        score(f"SmolLM2 untrained, SID rows from {STEP0[sid_init]}", llm_top(untrained))
        walls[f"llm_step0_{sid_init}"] = time.perf_counter() - t
        del untrained

    t = time.perf_counter()
    ledger = TimeLedger(args.work_dir / "llm_time.json", args.train_minutes)
    rec = train_sft(recipe, resume=True, dataset=dataset, sid=sid, callbacks=[ledger])
    walls["llm_train_last_call"] = time.perf_counter() - t
    walls["llm_train_total"] = ledger.spent
    state = read_json(latest_checkpoint(args.work_dir / "llm") / TRAINER_STATE)
    t = time.perf_counter()
    top = llm_top(rec)
    walls["llm_test"] = time.perf_counter() - t
    t = time.perf_counter()
    free_rate = free_generation_valid_rate(rec, histories)
    walls["llm_free_generation"] = time.perf_counter() - t
    score(OURS, top, {"free_generation_valid_rate": free_rate})

    t = time.perf_counter()
    item_tokens = [sid.item_tokens(i) for i in range(dataset.num_items)]
    compact = train_compact(
        dataset,
        item_tokens,
        CompactTrainingConfig(
            output_dir=str(args.work_dir / "compact"),
            max_minutes=args.compact_minutes,
            eval_users=200,
            num_threads=threads,
        ),
    )
    walls["compact_train"] = time.perf_counter() - t
    c_top, _ = compact.recommend(histories, k=10, num_beams=max(args.beams, 10))
    score("Compact SID Llama", c_top)

    t = time.perf_counter()
    sasrec = train_sasrec(
        dataset,
        SASRecConfig(num_threads=threads, time_budget_s=60 * args.sasrec_minutes),
        output_dir=args.work_dir / "sasrec",
    )
    walls["sasrec_train"] = time.perf_counter() - t
    s_top, _ = sasrec.recommend(histories, 10)
    score("SASRec", s_top)

    ours = results[OURS]
    ratios = {
        base: {
            k: (ours[k] / results[base][k] if results[base][k] else float("nan"))
            for k in ("recall@10", "ndcg@10")
        }
        for base in ("SASRec", "Compact SID Llama", "Popularity")
    }
    columns = ["model", "recall@5", "ndcg@5", "recall@10", "ndcg@10", "coverage@10", "valid_item_rate"]
    rows = [{"model": name, **m} for name, m in results.items()]
    examples_seen = state["global_step"] * recipe.train.per_device_train_batch_size
    summary = (
        f"Amazon Beauty subset: {dataset.num_users:,} random users (seed 0), full {dataset.num_items:,}-item "
        f"catalog, leave-one-out; the first {len(targets)} subset users are tested (full-catalog ranking), "
        f"all models trained on the same subset. LLM: SmolLM2-135M-Instruct + LoRA r={recipe.lora.r} "
        f"(`{args.config}`), {ledger.spent / 60:.1f} CPU minutes of training "
        f"(cap {args.train_minutes:.0f}): {state['global_step']} steps "
        f"(~{examples_seen:,} training examples), "
        f"{len(sid.codebook_sizes)}-token RQ-KMeans SIDs, trie-constrained beam {args.beams}. Shared CPU, "
        f"{threads} threads. The full-data GPU recipe (`recipes/beauty_smollm2_qlora_gpu.yaml`) was NOT run "
        f"(no GPU in this session).\n\n{markdown_table(rows, columns)}\n"
        f"The two 'untrained' rows are the LLM at step 0 (LoRA and SID rows fresh), differing only in how "
        f"the new SID token rows start. "
        f"Free (unconstrained greedy) generation gives a real item for {100 * free_rate:.1f}% of test users; "
        f"constrained decoding for 100% by construction. "
        f"LLM / SASRec: R@10 x{ratios['SASRec']['recall@10']:.2f}; "
        f"LLM / compact: R@10 x{ratios['Compact SID Llama']['recall@10']:.2f}; "
        f"LLM / popularity: R@10 x{ratios['Popularity']['recall@10']:.2f}."
    )
    print(summary)
    if args.dry_run:
        return
    record(
        NAME,
        dataset=f"amazon2014-beauty[{args.users} users]",
        metrics=ours,
        baselines={k: v for k, v in results.items() if k != OURS},
        wall_times=walls,
        summary=summary,
        extra={
            "ratios": ratios,
            "llm_steps": state["global_step"],
            "subset_user_indices": users.tolist(),
            "test_users": len(targets),
            "recipe": recipe.to_dict(),
        },
    )


if __name__ == "__main__":
    main()
