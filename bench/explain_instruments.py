"""Review-sentence explanations on Amazon Musical Instruments (the PEPLER setting), against references.

The 2014 5-core reviews (1,429 users, 900 items, no titles) give each user a time-ordered sequence; the last
item is test, the one before validation (chronological per-user split). Items are named by semantic IDs
from training co-occurrence alone (``sid.modalities: [behaviour]``: the catalog has no text). Features are
mined from the reviews of training pairs only (:func:`genrec.prompts.explanations.training_review_features`),
and a pair's reference is the sentence of the user's own review that names a feature, selected as PEPLER
does (:func:`genrec.data.reviews.select_target`).

Three systems explain each test pair (the last
:data:`~genrec.prompts.explanations.EXPLANATION_HISTORY` history items and the held-out test item):

* **most frequent**: the training target sentence seen most often, for every pair;
* **base zero-shot**: SmolLM2-135M-Instruct with the adapter disabled;
* **tuned**: SmolLM2-135M-Instruct + LoRA on the review targets of the training pairs
  (``recipes/explain_instruments_smollm2_lora.yaml``), at most ``--train-minutes`` of training.

    python -m bench.explain_instruments --test-users 400 --train-minutes 25 --threads 2 --batch-size 25

Re-running resumes training and generation from ``--work-dir``.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from bench.common import markdown_table
from bench.explain_common import (
    OURS,
    add_mean_words,
    bench_recipe,
    count_evaluation,
    llm_texts,
    parse_bench_args,
    record_explanations,
    shown_validation,
    train_explainer,
)
from genrec.data.reviews import dataset_reviews, select_target
from genrec.eval.explain import explanation_metrics, metric_tokens, rouge
from genrec.model.explain import ExplanationConfig
from genrec.prompts.explanations import EXPLANATION_HISTORY, review_explanations, training_review_features
from genrec.train import load_or_build_sid
from genrec.train.sft import load_recipe_data

NAME = "explain_instruments"
BASELINES = ("most frequent", "base zero-shot")
KEYS = ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "fmr", "fcr", "usr", "div")


def most_frequent(texts: list[str]) -> str:
    """The text whose token sequence occurs most often (first seen wins a tie)."""
    counts = Counter(tuple(metric_tokens(t)) for t in texts)
    best = max(counts.values())
    return next(t for t in texts if counts[tuple(metric_tokens(t))] == best)


def main() -> None:
    args = parse_bench_args(__doc__, "instruments", test_users=400, max_new_tokens=40, batch_size=25)
    walls: dict[str, float] = {}

    t = time.perf_counter()
    recipe = bench_recipe(args)
    dataset = load_recipe_data(recipe)
    reviews = dataset_reviews(dataset, recipe.data.explanation_reviews)
    sid = load_or_build_sid(recipe, dataset)
    vocabulary = training_review_features(dataset, reviews)
    by_pair = {(r.user, r.item): r for r in reviews}
    split = dataset.test_examples() if args.split == "test" else dataset.valid_examples()
    pairs = []  # (user index, history window, item, reference target)
    for u, (history, item) in enumerate(zip(split.histories, split.targets.tolist())):
        review = by_pair.get((dataset.users[u], dataset.catalog[item].id))
        target = select_target(review, vocabulary) if review is not None else None
        if target is not None:
            pairs.append((u, history[-EXPLANATION_HISTORY:], item, target))
    chosen = np.sort(
        np.random.default_rng(0).choice(len(pairs), min(args.test_users, len(pairs)), replace=False)
    )
    pairs = [pairs[k] for k in chosen]
    histories, items = [h for _, h, _, _ in pairs], [i for _, _, i, _ in pairs]
    references = [target.sentence for *_, target in pairs]
    reference_features = [target.feature for *_, target in pairs]
    train_targets = [e.explanation for e in review_explanations(dataset, reviews)]
    walls["data_and_sids"] = time.perf_counter() - t

    t = time.perf_counter()
    rec, training = train_explainer(recipe, dataset, sid, args.work_dir, args.train_minutes)
    walls["train_total"] = training["train_minutes"] * 60
    walls["train_last_call"] = time.perf_counter() - t

    config = ExplanationConfig(max_new_tokens=args.max_new_tokens)
    texts = {"most frequent": [most_frequent(train_targets)] * len(pairs)}
    texts.update(llm_texts(rec, recipe, training, histories, items, config, args, walls))

    results = {
        name: explanation_metrics(outputs, references, vocabulary.features, reference_features)
        for name, outputs in texts.items()
    }
    add_mean_words(results, texts)
    if shown_validation(args, config, results, KEYS):
        return
    run = count_evaluation(NAME, recipe, args, training, config)
    evaluations = run["test_evaluations"]
    # per-pair ROUGE-L picks the tuned model's best and worst outputs for the docs
    per_pair = [rouge([r], [h])["rougeL"] for h, r in zip(texts[OURS], references)]
    order = np.argsort(per_pair, kind="stable")

    def example(k: int) -> dict:
        u, _, item, target = pairs[k]
        return {
            "user": dataset.users[u],
            "item": dataset.catalog[item].id,
            "reference": target.sentence,
            "feature": target.feature,
            "rating": target.rating,
            **{name: texts[name][k] for name in texts},
            "tuned_rougeL": per_pair[k],
        }

    examples = {"best": [example(k) for k in order[::-1][:5]], "worst": [example(k) for k in order[:5]]}
    rows = [{"system": name, **m} for name, m in results.items()]
    summary = (
        f"Amazon Musical Instruments 5-core reviews ({dataset.num_users:,} users, {dataset.num_items} items, "
        f"no titles), chronological per-user split; {len(pairs)} random test pairs with a reference (a "
        f"sentence of the user's own review naming one of {len(vocabulary.features):,} features mined from "
        f"training reviews). Tuned: SmolLM2-135M-Instruct + LoRA r={recipe.lora.r} on "
        f"{len(train_targets):,} review targets of training pairs, {training['steps']} steps "
        f"(~{training['examples_seen']:,} examples, {training['train_minutes']:.1f} CPU minutes); "
        f"items named by behaviour-only semantic IDs. Greedy decoding, at most {args.max_new_tokens} new "
        f"tokens. BLEU and ROUGE in percent. Test split looked at "
        f"{evaluations['this_config']} time(s) with this configuration. For scale, PEPLER on "
        f"TripAdvisor: BLEU-4 1.02, ROUGE-1 16.2, USR .20.\n\n"
        f"{markdown_table(rows, ['system', *KEYS, 'mean_words'])}"
    )
    record_explanations(
        NAME,
        f"amazon2014-musical-instruments[{len(pairs)} test pairs]",
        results,
        KEYS,
        BASELINES,
        walls,
        summary,
        run,
        {
            "test_pairs": len(pairs),
            "most_frequent_text": texts["most frequent"][0],
            "examples": examples,
        },
    )


if __name__ == "__main__":
    main()
