"""The demo's recommenders: Popularity and SASRec, the compact SID model, and SmolLM2 + LoRA.

Every model is scored the same way (full ranking, leave-one-out, each user's own items excluded, as no
synthetic user buys an item twice) on the same test users (the first ``eval_users``: beam search through
the LLM is the demo's slowest step), so the rows of the report compare directly.
Each stage has a fixed amount of work (epochs or steps), not a time budget: on a slower machine the demo
takes longer but shows the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data import SequenceDataset, SplitExamples
from genrec.demo.report import Report
from genrec.eval import evaluate_lists

KS = (5, 10)
BEAMS = 20


@dataclass
class RecommenderBudget:
    """Work per model (SASRec and compact epochs, LLM steps) and the test users every model is scored on."""

    sasrec_epochs: int
    compact_epochs: int
    llm_steps: int
    eval_users: int
    llm_layers: int = 4  # the first N of SmolLM2's 30 layers: a CPU-sized backbone (ML-100K recipe)


def scored_users(ds: SequenceDataset, budget: RecommenderBudget) -> SplitExamples:
    """The first ``eval_users`` test examples: the same users for every model."""
    test = ds.test_examples()
    n = min(budget.eval_users, len(test))
    return SplitExamples(test.users[:n], test.histories[:n], test.targets[:n])


def generative_metrics(rec: Any, test: SplitExamples, num_items: int, batch_size: int) -> dict[str, float]:
    """Metrics of a generative recommender's top 10 from trie-constrained beam search, own items excluded."""
    top, _ = rec.recommend(test.histories, k=10, num_beams=BEAMS, batch_size=batch_size, exclude_history=True)
    return evaluate_lists(np.asarray(top), test.targets, num_items, ks=KS)


def baseline_stage(
    ds: SequenceDataset,
    budget: RecommenderBudget,
    output_dir: Path,
    seed: int,
    threads: int,
    report: Report,
) -> dict[str, dict[str, float]]:
    from genrec.baselines import Popularity, SASRecConfig, train_sasrec
    from genrec.eval import evaluate_recommender

    test = scored_users(ds, budget)
    config = SASRecConfig(
        epochs=budget.sasrec_epochs, patience=budget.sasrec_epochs, seed=seed, num_threads=threads
    )
    sasrec = train_sasrec(ds, config, output_dir=output_dir / "sasrec")
    rows = {
        name: evaluate_recommender(model, test, ks=KS, exclude_history=True)
        for name, model in (("Popularity", Popularity().fit(ds)), ("SASRec", sasrec))
    }
    report.add(
        "Baselines",
        f"Popularity (ties by item index) and SASRec ({config.hidden}-d, softmax over all items, "
        f"{budget.sasrec_epochs} epochs).",
    )
    return rows


def compact_stage(
    ds: SequenceDataset,
    sid: Any,
    budget: RecommenderBudget,
    output_dir: Path,
    seed: int,
    threads: int,
    report: Report,
) -> tuple[dict[str, dict[str, float]], Any]:
    """The compact from-scratch Llama over semantic-ID tokens, decoded under the item trie; returns its
    metrics and the :class:`~genrec.model.GenerativeRecommender` (also saved in ``recommender/``)."""
    from genrec.model import GenerativeRecommender
    from genrec.model.compact import CompactConfig, CompactTrainingConfig, train_compact

    config = CompactTrainingConfig(
        output_dir=str(output_dir / "compact"),
        compact=CompactConfig(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256),
        epochs=budget.compact_epochs,
        batch_size=32,
        learning_rate=3e-3,
        warmup_steps=20,
        eval_users=100,  # the best epoch on 100 validation users; the schedule runs to its end
        eval_beams=10,
        patience=budget.compact_epochs,
        seed=seed,
        num_threads=threads,
    )
    compact = train_compact(ds, [sid.item_tokens(i) for i in range(ds.num_items)], config)
    rec = GenerativeRecommender.from_compact(compact, ds.catalog, sid)
    rec.save_pretrained(output_dir / "recommender")
    test = scored_users(ds, budget)
    metrics = generative_metrics(rec, test, ds.num_items, batch_size=64)
    history = [ds.catalog[i].id for i in test.histories[0][-5:]]
    example = rec.generate(history, num_items=5, num_beams=BEAMS, exclude_history=True)
    report.add(
        "Generative recommender (compact)",
        f"A compact Llama ({compact.num_parameters() / 1e6:.2f}M parameters) trained from scratch for "
        f"{budget.compact_epochs} epochs on whole user sequences of semantic-ID tokens, decoded by "
        f"trie-constrained beam search (beam {BEAMS}), so every recommendation is a real catalog item.\n\n"
        + _example(ds, test.users[0], test.histories[0], example)
        + f"\n\nSaved to `recommender/`: "
        f"`genrec recommend {output_dir / 'recommender'} {' '.join(history)}`.",
    )
    return {"Generative (compact)": metrics}, rec


def llm_stage(
    ds: SequenceDataset,
    sid: Any,
    budget: RecommenderBudget,
    output_dir: Path,
    seed: int,
    threads: int,
    report: Report,
) -> dict[str, dict[str, float]]:
    """SmolLM2-135M-Instruct (its first layers) + LoRA, tuned on whole sequences of semantic-ID tokens."""
    from genrec.train import SFTRecipe, train_sft

    recipe = SFTRecipe.from_dict(
        {
            "model": {"num_layers": budget.llm_layers},
            "lora": {
                "r": 16,
                "alpha": 32,
                "dropout": 0.0,
                "target_modules": [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
                "train_sid_tokens": True,
            },
            "data": {
                "max_history": 10,  # short prompts: the LLM's steps and beam search cost grow with them
                "tasks": {"sequence": 1.0, "item2sid": 0.5, "sid2item": 0.25},
                "recommend_task": "sequence",
                "eval_users": 0,
            },
            "train": {
                "output_dir": str(output_dir / "llm"),
                "max_steps": budget.llm_steps,
                "per_device_train_batch_size": 8,
                "learning_rate": 2e-3,
                "warmup_steps": 0.05,
                "logging_steps": 10,
                "save_steps": budget.llm_steps,
                "seed": seed,
                "num_threads": threads,
                "report_to": "none",
            },
        }
    )
    rec = train_sft(recipe, resume=True, dataset=ds, sid=sid)
    test = scored_users(ds, budget)
    metrics = generative_metrics(rec, test, ds.num_items, batch_size=32)
    example = rec.generate(test.histories[0], num_items=5, num_beams=BEAMS, exclude_history=True)
    report.add(
        "Generative recommender (LLM)",
        f"SmolLM2-135M-Instruct from the installed wheel, its first {budget.llm_layers} layers, with LoRA "
        f"(r {recipe.lora.r}) and trainable semantic-ID token rows, tuned for {budget.llm_steps} steps of "
        f"batch {recipe.train.per_device_train_batch_size} on whole sequences plus item↔ID alignment "
        "(the `recipes/ml100k_smollm2_lora.yaml` recipe in miniature), decoded under the same trie.\n\n"
        + _example(ds, test.users[0], test.histories[0], example)
        + "\n\nSaved to `llm/final`: "
        f"`GenerativeRecommender.from_pretrained('{output_dir / 'llm' / 'final'}')`.",
    )
    return {"Generative (LLM)": metrics}


def _example(ds: SequenceDataset, user: str, history: np.ndarray, recommendation: Any) -> str:
    recent = "; ".join(ds.catalog[i].title for i in history[-5:])
    listing = "\n".join(
        f"{rank}. `{sid_str}` {title} (score {score:.2f})"
        for rank, (sid_str, title, score) in enumerate(
            zip(recommendation.semantic_ids, recommendation.titles, recommendation.scores), 1
        )
    )
    return f"User {user} recently bought: {recent}.\n\n`rec.generate(history, num_items=5)`:\n\n{listing}"
