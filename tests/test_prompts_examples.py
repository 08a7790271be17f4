"""Training examples: windows over training sequences only, capped histories, task mixing, chat format."""

from __future__ import annotations

import numpy as np
import pytest
from llm_tiny import CHATML, tiny_sid, tiny_tokenizer

from genrec.data import Catalog, Item, SequenceDataset
from genrec.errors import TemplateError
from genrec.prompts import (
    ChatFormat,
    build_eval_examples,
    build_sft_examples,
    load_templates,
    sliding_windows,
)


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


def test_explanation_has_no_training_data_yet():
    ds = held_out_dataset()
    tok = tiny_tokenizer(ds.catalog.titles)
    templates = load_templates(names=["explanation"])
    with pytest.raises(TemplateError, match="no training data"):
        build_sft_examples(ds, tiny_sid(ds.catalog), templates, {"explanation": 1.0}, tok)
    with pytest.raises(TemplateError, match="only"):
        build_sft_examples(ds, tiny_sid(ds.catalog), templates, {"seqrec": 1.0}, tok)


def test_chat_format_matches_the_tokenizer_template():
    tok = tiny_tokenizer(["hello world"])
    assert tok.chat_template == CHATML
    fmt = ChatFormat(tok, "Be brief.")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {there}"}]
    assert fmt("Hi {there}") == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tok.chat_template = None
    assert ChatFormat(tok, "Be brief.")("Hi") == "Be brief.\nHi\n"
