"""Explanations at inference: one per recommended item, batched, greedy-deterministic, from the adapter or the
base model, with every decoding setting explicit; and teacher targets filtered for faithfulness."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor

from genrec.cli import main
from genrec.errors import TemplateError
from genrec.model import ExplanationConfig, GenerativeRecommender, LoraSettings
from genrec.model.explain import generate_texts
from genrec.prompts import load_templates
from genrec.train.teacher import teacher_explanations

SHORT = ExplanationConfig(max_new_tokens=6)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ds = tiny_dataset()
    # untied: a random tied model greedily repeats the prompt's last token ("\n"), which decodes to nothing
    path = tiny_base_model(tmp_path_factory.mktemp("base"), ds.catalog, tied=False)
    templates = load_templates(names=["seqrec", "explanation"])
    rec = GenerativeRecommender.build(
        ds.catalog, tiny_sid(ds.catalog), base_model=path, lora=LoraSettings(r=4)
    )
    rec.templates = templates
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: an adapter that changes the model's output
        for p in rec.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return ds, rec, path


def test_every_item_gets_an_explanation_in_one_batched_call(setup, monkeypatch):
    _, rec, _ = setup
    calls = []
    generate = rec.model.generate
    monkeypatch.setattr(
        rec.model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or generate(**kw)
    )
    batch = rec.generate([[0, 3, 5], [1]], num_items=3, explain=True, explanation=SHORT, batch_size=2)
    assert calls == [calls[0]] and calls[0][0] == 6  # 2 users x 3 items, one generate call
    for rec_one in batch:
        assert len(rec_one.explanations) == len(rec_one) == 3
        assert all(isinstance(t, str) and t for t in rec_one.explanations)
    # left padding: the same texts as one pair at a time, and deterministic under greedy decoding
    single = [
        rec.explain([h], [i], SHORT)[0]
        for h, i in [([0, 3, 5], batch[0].indices[0]), ([1], batch[1].indices[2])]
    ]
    assert single == [batch[0].explanations[0], batch[1].explanations[2]]
    again = rec.generate([[0, 3, 5], [1]], num_items=3, explain=True, explanation=SHORT, batch_size=2)
    assert [r.explanations for r in again] == [r.explanations for r in batch]
    assert rec.generate([0, 3, 5], num_items=3).explanations == []  # not asked: none


def test_base_explainer_is_the_model_without_its_adapter(setup):
    ds, rec, path = setup
    history, item = [0, 3, 5], 7
    tuned = rec.explain([history], [item], SHORT)
    free = ExplanationConfig(max_new_tokens=6, grounded=False)  # generate_texts alone does not ground
    base = rec.explain([history], [item], free, explainer="base")
    assert tuned != base
    plain = AutoModelForCausalLM.from_pretrained(path).eval()  # the base weights, never wrapped in LoRA
    prompt = rec.explanation_prompt(history, item, free)
    assert generate_texts(plain, AutoTokenizer.from_pretrained(path), [prompt], free) == base
    assert rec.explain([history], [item], SHORT) == tuned  # the adapter is back on afterwards
    with pytest.raises(ValueError, match="explainer must be"):
        rec.generate(history, num_items=2, explain=True, explainer="teacher")


def test_model_generation_config_is_ignored(setup):
    _, rec, _ = setup
    before = rec.generate([2, 4], num_items=2, explain=True, explanation=SHORT)
    config = rec.model.get_base_model().generation_config
    saved = config.to_dict()
    config.max_new_tokens, config.do_sample, config.top_k, config.num_beams = 1, True, 1, 3
    config.repetition_penalty, config.suppress_tokens = 50.0, list(range(100, 300))
    try:
        after = rec.generate([2, 4], num_items=2, explain=True, explanation=SHORT)
    finally:
        for key, value in saved.items():
            setattr(config, key, value)
    assert after.explanations == before.explanations
    assert rec.model.get_base_model().generation_config.repetition_penalty != 50.0  # restored by the test
    sampled = ExplanationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.9)
    torch.manual_seed(0)
    a = rec.explain([[2, 4]], [9], sampled)
    torch.manual_seed(0)
    assert rec.explain([[2, 4]], [9], sampled) == a  # sampling is repeatable under a seed


def test_missing_explanation_template_is_a_clear_error(setup):
    ds, rec, _ = setup
    plain = GenerativeRecommender(
        rec.model, rec.tokenizer, ds.catalog, rec.sid, {"seqrec": rec.templates["seqrec"]}
    )
    with pytest.raises(
        TemplateError, match=r"named 'explanation' \(prompts/explanation.yaml\); loaded: \['seqrec'\]"
    ):
        plain.generate([1, 2], num_items=2, explain=True)
    with pytest.raises(ValueError, match="top_p"):
        ExplanationConfig(top_p=0.0)


def test_cli_prints_explanations(setup, tmp_path, capsys):
    ds, rec, _ = setup
    folder = rec.save_pretrained(tmp_path / "rec")
    items = [ds.catalog[0].id, ds.catalog[3].id]
    assert (
        main(["recommend", str(folder), *items, "--num-items", "2", "--explain", "--max-new-tokens", "6"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    expected = rec.generate([0, 3], num_items=2, num_beams=20, explain=True, explanation=SHORT)
    assert lines[0].startswith(" 1. " + expected.item_ids[0])
    assert [line.strip() for line in lines[1::2]] == expected.explanations


def test_teacher_keeps_faithful_explanations_and_caches_them(setup, tmp_path, monkeypatch):
    ds, rec, _ = setup
    catalog = ds.catalog

    def fake_explain(histories, items, config, explainer, batch_size):
        assert explainer == "base"
        texts = []
        for history, item in zip(histories, items):
            brands = {catalog[i].fields["brand"] for i in [*history.tolist(), item]}
            stranger = next(it.fields["brand"] for it in catalog if it.fields["brand"] not in brands)
            own = f"It is from {catalog[item].fields['brand']}."
            texts.append(own if item % 2 else f"You loved {stranger} before.")  # odd: faithful; even: not
        return texts

    monkeypatch.setattr(rec, "explain", fake_explain)
    cache = tmp_path / "teacher.jsonl"
    kept = teacher_explanations(rec, ds, max_count=12, cache_path=cache)
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(records) == 12 and {"key", "user", "history", "item", "explanation"} <= set(records[0])
    assert 0 < len(kept) < len(records) and all(ex.item % 2 == 1 for ex in kept)
    assert len(kept) == sum(catalog.index_of(r["item"]) % 2 for r in records)
    monkeypatch.setattr(rec, "explain", lambda *a, **k: pytest.fail("cached explanations were regenerated"))
    again = teacher_explanations(rec, ds, max_count=12, cache_path=cache)
    assert [(e.item, e.explanation) for e in again] == [(e.item, e.explanation) for e in kept]
    assert all(np.array_equal(a.history, b.history) for a, b in zip(again, kept))


def test_grounded_explanations_name_nothing_outside_item_and_history(setup):
    from genrec.data.attributes import AttributeVocabulary
    from genrec.eval.explain import check_explanations

    ds, rec, _ = setup
    histories, items = [[0, 3, 5], [1], [7, 8]], [2, 4, 9]
    config = ExplanationConfig(max_new_tokens=24, grounded=True)
    texts = rec.explain(histories, items, config)
    assert texts == rec.explain(histories, items, config)  # deterministic, the trie cached
    assert len(rec._phrase_trie()) > 1
    vocab = AttributeVocabulary.from_catalog(ds.catalog)
    assert not any(c.hallucinated for c in check_explanations(texts, histories, items, ds.catalog, vocab))


def test_trim_to_sentence_keeps_whole_sentences_only():
    from genrec.model.explain import trim_to_sentence

    assert trim_to_sentence("It is from Olay. You liked the Olay Regenerist Micro") == "It is from Olay."
    assert trim_to_sentence('You said "gentle!" Then the 3.4 oz Cl') == 'You said "gentle!"'
    assert trim_to_sentence("Great for dry skin? Yes. It suits") == "Great for dry skin? Yes."
    assert trim_to_sentence("No sentence end in 3.4 oz") == "No sentence end in 3.4 oz"  # nothing to keep
    # a quoted title's full stops end no sentence; a closing quote after the stop does
    assert trim_to_sentence('"Serum For Your Face. Botanical 20%" is a serum. It fits your "e.l.f. Ma') == (
        '"Serum For Your Face. Botanical 20%" is a serum.'
    )
    assert trim_to_sentence('"e.l.f. 3-in-1 Mascara') == '"e.l.f. 3-in-1 Mascara'
    assert trim_to_sentence("\u201cSay no more.\u201d Then") == "\u201cSay no more.\u201d"


class _Script(LogitsProcessor):
    """Forces the continuation to be ``tokens`` (then EOS), whatever the model says."""

    def __init__(self, prompt_length: int, tokens: list[int], eos: int) -> None:
        self.prompt_length, self.tokens, self.eos = prompt_length, tokens, eos

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        forced = self.tokens[step] if step < len(self.tokens) else self.eos
        out = torch.full_like(scores, -torch.inf)
        out[:, forced] = 0.0
        return out


def test_explanations_cut_by_the_token_budget_end_at_a_sentence(setup):
    _, rec, _ = setup
    tok = rec.tokenizer
    tokens = tok("It suits you. You liked the Gel Sooth", add_special_tokens=False)["input_ids"]
    prompt = [rec.explanation_prompt([0, 3], 2, SHORT)]

    def run(max_new_tokens: int, **kw) -> str:
        config = ExplanationConfig(max_new_tokens=max_new_tokens, **kw)
        script = functools.partial(_Script, tokens=tokens, eos=tok.eos_token_id)
        return generate_texts(rec.model, tok, prompt, config, logits_processors=lambda n: [script(n)])[0]

    assert run(len(tokens)) == "It suits you."  # ran out of tokens mid-sentence: trimmed
    assert run(len(tokens), whole_sentences=False) == "It suits you. You liked the Gel Sooth"
    assert run(len(tokens) + 5) == "It suits you. You liked the Gel Sooth"  # ended (EOS) by itself: kept
