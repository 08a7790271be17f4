"""The demo's explanation stage: SmolLM2 + LoRA, briefly tuned on catalog-grounded explanations, explains
the compact model's picks, and its faithfulness is measured beside the template it learned from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.data import SequenceDataset
from genrec.demo.report import Report, metrics_table

# The explainer adapts SmolLM2's last layers only (lora.top_layers): backward stops there, so a CPU step
# costs little more than a forward pass, and a minute of tuning teaches the grounded format.
EXPLAINER_TOP_LAYERS = 4


@dataclass
class ExplanationBudget:
    """Tuning steps, the users whose training pairs give targets, and the test pairs scored."""

    train_steps: int
    train_users: int  # enough pairs for the steps; building and tokenizing all users' pairs costs time
    eval_pairs: int
    max_new_tokens: int = 40


def explanation_stage(
    ds: SequenceDataset,
    sid: Any,
    recommender: Any,
    budget: ExplanationBudget,
    output_dir: Path,
    seed: int,
    threads: int,
    report: Report,
) -> dict[str, dict[str, float]]:
    """Tune, explain two users' top 3 from ``recommender``, and score the first users' held-out test pairs
    for the tuned explainer and the template verbalizer its targets come from."""
    from genrec.data.attributes import price_bands_of
    from genrec.eval.explain import AttributeVocabulary, check_explanations, explanation_metrics
    from genrec.model.explain import ExplanationConfig
    from genrec.prompts.explanations import EXPLANATION_HISTORY
    from genrec.prompts.grounding import verbalize_explanations
    from genrec.train import SFTRecipe, train_sft

    recipe = SFTRecipe.from_dict(
        {
            # explanations are text: the semantic-ID rows stay as initialised
            "lora": {
                "r": 16,
                "alpha": 32,
                "dropout": 0.0,
                "top_layers": EXPLAINER_TOP_LAYERS,
                "train_sid_tokens": False,
            },
            "data": {"tasks": {"explanation": 1.0}, "explanation_source": "grounding", "eval_users": 0},
            "train": {
                "output_dir": str(output_dir / "explainer"),
                "max_steps": budget.train_steps,
                "per_device_train_batch_size": 4,
                "learning_rate": 2e-3,
                "save_steps": budget.train_steps,
                "seed": seed,
                "num_threads": threads,
                "report_to": "none",
            },
        }
    )
    trained_on = ds.subset(list(range(min(budget.train_users, ds.num_users))))
    explainer = train_sft(recipe, resume=True, dataset=trained_on, sid=sid)
    catalog, test = ds.catalog, ds.test_examples()
    generation = ExplanationConfig(max_new_tokens=budget.max_new_tokens)

    # The recommender's top 3 for two users, explained in the same batch as the scored test pairs.
    users = [0, 1]
    picks = recommender.generate(
        [test.histories[u] for u in users], num_items=3, num_beams=20, exclude_history=True
    )
    n = min(budget.eval_pairs, len(test))
    histories = [h[-EXPLANATION_HISTORY:] for h in test.histories[:n]]
    items = test.targets[:n].tolist()
    shown_histories = [histories[u] for u in users for _ in range(3)]
    shown_items = [int(i) for p in picks for i in p.indices]
    tuned = explainer.explain(
        histories + shown_histories, items + shown_items, generation, batch_size=n + len(shown_items)
    )
    reasons = tuned[n:]
    bands = price_bands_of(catalog)
    vocabulary = AttributeVocabulary.from_catalog(catalog, bands)
    texts = {
        "tuned explainer": tuned[:n],
        "template": verbalize_explanations(catalog, histories, items, bands),
    }
    scores = {
        name: explanation_metrics(
            outputs, faithfulness=check_explanations(outputs, histories, items, catalog, vocabulary)
        )
        for name, outputs in texts.items()
    }

    shown = []
    for k, (u, p) in enumerate(zip(users, picks)):
        recent = "; ".join(catalog[i].title for i in test.histories[u][-EXPLANATION_HISTORY:])
        lines = "\n".join(
            f"{rank}. **{title}**: {reason}"
            for rank, (title, reason) in enumerate(zip(p.titles, reasons[3 * k : 3 * k + 3]), 1)
        )
        shown.append(f"User {test.users[u]} recently bought: {recent}.\n\n{lines}")
    report.add(
        "Explanations",
        f"SmolLM2-135M-Instruct + LoRA on its last {EXPLAINER_TOP_LAYERS} layers, tuned for "
        f"{budget.train_steps} steps on catalog-grounded targets (brand, category and price band the item "
        "shares with the history), explains the compact recommender's top 3 for two users "
        "(`rec.generate(history, explain=True)` does both in one call for an LLM recommender):\n\n"
        + "\n\n".join(shown)
        + f"\n\nOn the first {n} users' held-out test items:\n\n"
        + metrics_table(scores, ["faithfulness", "hallucination_rate", "usr"])
        + "\nFaithful: every brand, category, title and price band named belongs to the item or the history.",
    )
    return scores
