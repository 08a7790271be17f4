"""Training examples: windows over training sequences only, capped histories, task mixing, chat format,
explanation examples."""

from __future__ import annotations

import re

import numpy as np
import pytest
from llm_tiny import CHATML, tiny_sid, tiny_tokenizer

from genrec.data import Catalog, Item, SequenceDataset
from genrec.data.attributes import price_bands_of
from genrec.errors import TemplateError
from genrec.eval.explain import AttributeVocabulary, check_explanation
from genrec.prompts import (
    EXPLANATION_HISTORY,
    ChatFormat,
    build_eval_examples,
    build_sft_examples,
    grounded_explanations,
    load_templates,
    sliding_windows,
    verbalize_explanation,
)
from genrec.prompts.grounding import NO_ATTRIBUTES


def held_out_dataset(num_users: int = 10, seed: int = 0) -> SequenceDataset:
    """Training parts use items 0..19; each validation and test target is an item used nowhere else."""
    rng = np.random.default_rng(seed)
    catalog = Catalog([Item(f"i{i}", title=f"Product {i}", fields={"brand": f"B{i % 3}"}) for i in range(40)])
    seqs = []
    for u in range(num_users):
        train = rng.choice(20, size=int(rng.integers(1, 9)), replace=False)
        seqs.append(np.concatenate([train, [20 + 2 * u, 21 + 2 * u]]))
    return SequenceDataset("held-out", catalog, [f"u{u}" for u in range(num_users)], seqs)


def test_sliding_windows_known_answer():
    histories, targets, owners = sliding_windows([np.array([5, 6, 7, 8]), np.array([1])], max_history=2)
    assert [h.tolist() for h in histories] == [[5], [5, 6], [6, 7]]
    assert targets.tolist() == [6, 7, 8]
    assert owners.tolist() == [0, 0, 0]


def test_examples_never_contain_validation_or_test_items():
    ds = held_out_dataset()
    sid = tiny_sid(ds.catalog)
    tok = tiny_tokenizer(ds.catalog.titles)
    templates = load_templates(names=["seqrec", "seqrec_titles"])
    ex = build_sft_examples(ds, sid, templates, {"seqrec": 1.0, "seqrec_titles": 1.0}, tok, max_history=3)
    held = {"".join(sid.item_tokens(i)) for i in range(20, 40)}
    assert ex["prompt"], "expected some examples"
    for prompt, completion in zip(ex["prompt"], ex["completion"]):
        assert completion not in held
        assert not any(h in prompt for h in held)
    n_windows = sum(max(len(s) - 1, 0) for s in ds.train_sequences())
    assert ex["task"].count("seqrec") == ex["task"].count("seqrec_titles") == n_windows


def test_history_is_capped_and_mixing_counts():
    ds = held_out_dataset()
    sid = tiny_sid(ds.catalog)
    tok = tiny_tokenizer(ds.catalog.titles)
    templates = load_templates(names=["seqrec", "item2sid", "sid2item"])
    mix = {"seqrec": 0.5, "item2sid": 2.0, "sid2item": 0.25}
    ex = build_sft_examples(ds, sid, templates, mix, tok, max_history=2, seed=1)
    n_windows = sum(max(len(s) - 1, 0) for s in ds.train_sequences())
    assert ex["task"].count("seqrec") == round(0.5 * n_windows)
    assert ex["task"].count("item2sid") == 2 * 40
    assert ex["task"].count("sid2item") == 10
    for prompt, task in zip(ex["prompt"], ex["task"]):
        if task == "seqrec":
            assert prompt.count("<a_") <= 2  # capped history, one <a_..> token per item
    sid_strings = {"".join(sid.item_tokens(i)) for i in range(40)}
    titles = set(ds.catalog.titles)
    for completion, task in zip(ex["completion"], ex["task"]):
        assert completion in (titles if task == "sid2item" else sid_strings)


def test_eval_examples_target_the_validation_item():
    ds = held_out_dataset()
    sid = tiny_sid(ds.catalog)
    tok = tiny_tokenizer(ds.catalog.titles)
    ev = build_eval_examples(ds, sid, load_templates(names=["seqrec"])["seqrec"], tok, max_users=4)
    assert ev["completion"] == ["".join(sid.item_tokens(20 + 2 * u)) for u in range(4)]


def test_explanation_examples_in_the_multi_task_mix():
    ds = held_out_dataset()
    sid = tiny_sid(ds.catalog)
    tok = tiny_tokenizer(ds.catalog.titles)
    templates = load_templates(names=["seqrec", "explanation"])
    targets = grounded_explanations(ds)
    n_windows = sum(max(len(s) - 1, 0) for s in ds.train_sequences())
    assert len(targets) == n_windows
    ex = build_sft_examples(
        ds, sid, templates, {"seqrec": 1.0, "explanation": 0.5}, tok, explanations=targets, seed=2
    )
    assert ex["task"].count("seqrec") == n_windows and ex["task"].count("explanation") == round(
        0.5 * n_windows
    )
    bands = price_bands_of(ds.catalog)
    for t in targets:
        assert len(t.history) <= EXPLANATION_HISTORY
        history = [ds.catalog[i] for i in t.history]
        assert t.explanation == verbalize_explanation(ds.catalog[t.item], history, bands)
    by_text: dict[str, list] = {}
    for t in targets:
        by_text.setdefault(t.explanation, []).append(t)
    held_out = re.compile(r"\bProduct [23]\d\b")  # titles of validation/test items
    for prompt, completion, task in zip(ex["prompt"], ex["completion"], ex["task"]):
        if task != "explanation":
            continue
        assert prompt.startswith("<|im_start|>system\nYou are a shopping assistant")
        assert not held_out.search(prompt + completion)
        # the answer is a target of the source, and the prompt shows that target's item and history
        assert any(
            f"Recommended item: {ds.catalog[t.item].title}" in prompt
            and all(ds.catalog[i].title in prompt for i in t.history)
            for t in by_text[completion]
        )


def test_explanation_needs_targets_and_loaded_templates():
    ds = held_out_dataset()
    tok = tiny_tokenizer(ds.catalog.titles)
    templates = load_templates(names=["explanation"])
    with pytest.raises(TemplateError, match="no explanation targets"):
        build_sft_examples(ds, tiny_sid(ds.catalog), templates, {"explanation": 1.0}, tok)
    with pytest.raises(TemplateError, match="only"):
        build_sft_examples(ds, tiny_sid(ds.catalog), templates, {"seqrec": 1.0}, tok)


def test_item_without_metadata_gets_a_shorter_faithful_target():
    rich = [
        Item(
            f"r{i}", f"Rose Face Cream {i}", {"brand": "Rosa", "categories": ["Beauty", "Creams"], "price": p}
        )
        for i, p in enumerate([5.0, 9.0, 14.0, 30.0])
    ]
    bare = Item("bare", "")  # nothing but an id
    catalog = Catalog([*rich, bare])
    ds = SequenceDataset("meta", catalog, ["u0", "u1"], [[0, 1, 4, 2, 3], [1, 0, 2, 3, 4]])
    sid = tiny_sid(catalog)
    templates = load_templates(names=["explanation"])
    ex = build_sft_examples(
        ds,
        sid,
        templates,
        {"explanation": 1.0},
        tiny_tokenizer(["x"]),
        explanations=grounded_explanations(ds),
    )
    vocabulary = AttributeVocabulary.from_catalog(catalog)
    targets = {t.item: t for t in grounded_explanations(ds)}
    assert targets[4].explanation == NO_ATTRIBUTES  # the bare item: nothing to say, nothing invented
    assert len(targets[4].explanation) < min(len(t.explanation) for t in targets.values() if t.item != 4)
    for t in targets.values():
        result = check_explanation(
            t.explanation, catalog[t.item], [catalog[i] for i in t.history], vocabulary
        )
        assert result.faithful and not result.hallucinated
    bare_prompt = next(p for p, c in zip(ex["prompt"], ex["completion"]) if c == NO_ATTRIBUTES)
    # no title: the prompt names the item by its ID, and shows no empty attribute fields
    assert re.search(f"Recommended item: {re.escape(sid_string(sid, 4))}[.\n]", bare_prompt)


def sid_string(sid, i: int) -> str:
    return "".join(sid.item_tokens(i))


def test_chat_format_matches_the_tokenizer_template():
    tok = tiny_tokenizer(["hello world"])
    assert tok.chat_template == CHATML
    fmt = ChatFormat(tok, "Be brief.")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {there}"}]
    assert fmt("Hi {there}") == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tok.chat_template = None
    assert ChatFormat(tok, "Be brief.")("Hi") == "Be brief.\nHi\n"
