"""Explanations on Amazon Beauty: the template verbalizer, the base model zero-shot and the LoRA-tuned model.

The tuned model is SmolLM2-135M-Instruct + LoRA trained on the explanation task alone with catalog-grounded
targets (``recipes/explain_beauty_smollm2_lora.yaml``: the recipe's random user subset, training pairs of
the users' training sequences only), for at most ``--train-minutes`` of wall time over all calls. The base
zero-shot system is the same model with the adapter disabled, given the same prompt. Both decode grounded
(:mod:`genrec.decoding.grounded`, the default); `--free-decoding` adds the tuned model decoding freely.

Each system explains the same pairs: a random sample of the subset's users (seed 0), each with the last
:data:`~genrec.prompts.explanations.EXPLANATION_HISTORY` items before their test item and the test item
itself (the held-out next purchase, which no training pair contains). Beauty has no reviews, so there
are no reference texts; the metrics are the reference-free ones:

* faithfulness / hallucination_rate (:func:`genrec.eval.check_explanation`) against the item and the
  history window the prompt shows;
* FMR (the item's own brand or one of its categories named), FCR and DIV over the catalog's brand and
  category phrases; USR.

    python -m bench.explain_beauty --test-users 200 --train-minutes 25 --threads 2 --batch-size 20

Re-running resumes training and generation from ``--work-dir``.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import markdown_table
from bench.explain_common import (
    FREE,
    LLM_SYSTEMS,
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
from genrec.data.attributes import price_bands_of
from genrec.eval.explain import AttributeVocabulary, check_explanations, explanation_metrics
from genrec.model.explain import ExplanationConfig
from genrec.prompts.explanations import EXPLANATION_HISTORY
from genrec.prompts.grounding import verbalize_explanations
from genrec.train import load_or_build_sid
from genrec.train.sft import load_recipe_data

NAME = "explain_beauty"
BASELINES = ("template", "base zero-shot")
# --free-decoding adds the tuned model without grounded decoding, to show what the constraint adds
FREE_SYSTEM = {FREE: ("adapter", False)}
KEYS = ("faithfulness", "hallucination_rate", "usr", "usr_delex", "fmr", "fcr", "div")


def main() -> None:
    args = parse_bench_args(__doc__, "beauty", test_users=200, max_new_tokens=64, batch_size=20)
    walls: dict[str, float] = {}

    t = time.perf_counter()
    recipe = bench_recipe(args)
    dataset = load_recipe_data(recipe)
    sid = load_or_build_sid(recipe, dataset)
    catalog = dataset.catalog
    split = dataset.test_examples() if args.split == "test" else dataset.valid_examples()
    users = np.sort(np.random.default_rng(0).choice(dataset.num_users, args.test_users, replace=False))
    histories = [split.histories[u][-EXPLANATION_HISTORY:] for u in users]
    items = [int(split.targets[u]) for u in users]
    walls["data_and_sids"] = time.perf_counter() - t

    t = time.perf_counter()
    rec, training = train_explainer(recipe, dataset, sid, args.work_dir, args.train_minutes)
    walls["train_total"] = training["train_minutes"] * 60
    walls["train_last_call"] = time.perf_counter() - t

    config = ExplanationConfig(max_new_tokens=args.max_new_tokens)
    bands = price_bands_of(catalog)
    texts = {"template": verbalize_explanations(catalog, histories, items, bands)}
    extra = FREE_SYSTEM if args.free_decoding else {}
    systems, baselines = {**LLM_SYSTEMS, **extra}, (*BASELINES, *extra)
    texts.update(llm_texts(rec, recipe, training, histories, items, config, args, walls, systems))

    vocabulary = AttributeVocabulary.from_catalog(catalog, bands)
    features = vocabulary.feature_phrases()
    item_features = [vocabulary.item_features(catalog[i]) for i in items]
    checks = {name: check_explanations(t, histories, items, catalog, vocabulary) for name, t in texts.items()}
    results = {
        name: explanation_metrics(
            outputs,
            features=features,
            reference_features=item_features,
            faithfulness=checks[name],
            vocabulary=vocabulary,
        )
        for name, outputs in texts.items()
    }
    add_mean_words(results, texts)
    if shown_validation(args, config, results, KEYS):
        return
    run = count_evaluation(NAME, recipe, args, training, config)
    evaluations = run["test_evaluations"]

    def example(k: int) -> dict:
        h, i = histories[k], items[k]
        return {
            "user": dataset.users[int(users[k])],
            "history": [catalog[j].title for j in h],
            "item": catalog[i].title,
            **{
                name: {
                    "text": texts[name][k],
                    "faithful": checks[name][k].faithful,
                    "unsupported": [m.phrase for m in checks[name][k].unsupported],
                }
                for name in texts
            },
        }

    unfaithful = [k for k, c in enumerate(checks[OURS]) if not c.faithful]
    examples = {
        "first": [example(k) for k in range(5)],
        "tuned_unfaithful": [example(k) for k in unfaithful[:5]],
    }
    rows = [{"system": name, **m} for name, m in results.items()]
    summary = (
        f"Amazon Beauty, recipe `{args.config}` ({dataset.num_users:,} random users, seed "
        f"{recipe.data.user_seed}): {len(items)} sampled users' test pairs (last {EXPLANATION_HISTORY} "
        f"history items + held-out next item), explained by each system. Tuned: SmolLM2-135M-Instruct + "
        f"LoRA r={recipe.lora.r} on catalog-grounded targets, {training['steps']} steps "
        f"(~{training['examples_seen']:,} examples, {training['train_minutes']:.1f} CPU minutes); base "
        f"zero-shot: the same model with the adapter disabled. Greedy decoding, grounded (brand, category "
        f"and price-band phrases that neither the item nor the shown history has are banned)"
        f"{f' except for `{FREE}`' if extra else ''}, at most "
        f"{args.max_new_tokens} new tokens. No references exist (Beauty has no reviews): "
        f"faithfulness/hallucination against the item and the shown history, FMR/FCR/DIV over "
        f"{len(features):,} brand and category phrases. Test split looked at {evaluations['this_config']} "
        f"time(s) with this configuration.\n\n"
        f"{markdown_table(rows, ['system', *KEYS, 'mean_words'])}"
    )
    record_explanations(
        NAME,
        f"amazon2014-beauty[{dataset.num_users} users]",
        results,
        KEYS,
        baselines,
        walls,
        summary,
        run,
        {
            "test_users": len(items),
            "examples": examples,
        },
    )


if __name__ == "__main__":
    main()
