"""Grounded decoding: phrases naming attributes outside a row's allowed set cannot be completed."""

from __future__ import annotations

import pytest
import torch
from llm_tiny import tiny_base_model, tiny_dataset, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor

from genrec.data.attributes import AttributeVocabulary
from genrec.decoding.grounded import (
    GroundedPhrasesProcessor,
    PhraseTrie,
    QuotedTitlesProcessor,
    surface_variants,
    title_cuts,
)
from genrec.eval.explain import check_explanations
from genrec.model.explain import ExplanationConfig, generate_texts

SURFACES = {
    "Now Fresh Oil": {"brand:fresh"},
    "Foods": {"brand:foods alone"},
    "Now Foods": {"brand:now foods"},
    "Now": {"brand:now"},
    "Skin Care": {"cat:skin"},
    "Hair": {"cat:hair"},
}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(["Now Foods makes Skin Care and Hair things. now foods, skin care, hair."] * 20)


def ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def banned(processor: GroundedPhrasesProcessor, prompt: list[int], generated: list[int]) -> list[set[int]]:
    """The tokens each row may not write next, every row having written ``generated`` after ``prompt``."""
    rows = torch.tensor([prompt + generated] * len(processor.allowed))
    scores = processor(rows, torch.zeros(len(rows), 500))
    return [set(torch.nonzero(row == -float("inf")).flatten().tolist()) for row in scores]


def test_surface_variants():
    forms = surface_variants("Now foods")
    assert {"Now foods", "now foods", "Now Foods", " Now foods", " now foods", " Now Foods"} <= forms
    assert {"Now-Foods", " now-foods"} <= forms and len(forms) == 12
    assert "NOW FOODS" not in forms
    assert {"women's", "women\u2019s", " Women\u2019s"} <= surface_variants("Women's")
    assert {"Katy-Perry", " katy-perry", "Katy perry"} <= surface_variants("Katy Perry")


def test_completions_of_disallowed_phrases_are_banned(tok):
    trie = PhraseTrie(tok, SURFACES)
    assert trie.depth == max(len(ids(tok, f)) for s in SURFACES for f in surface_variants(s))
    prompt = ids(tok, "Why:")
    allowed = [{"brand:now foods", "brand:fresh", "cat:skin"}, {"cat:hair"}]
    processor = GroundedPhrasesProcessor(trie, allowed, len(prompt))
    skin = ids(tok, " Skin Care")
    hair = ids(tok, " Hair")
    now = ids(tok, " Now")
    assert len(hair) == 1 and len(now) == 2 and len(skin) == 2  # this tokenizer's splits
    # before anything is written: a one-token phrase outside the row's set is banned at once
    row0, row1 = banned(processor, prompt, [])
    assert hair[0] in row0 and hair[0] not in row1
    # the last token of " Skin Care" is banned only where skin care is not allowed
    row0, row1 = banned(processor, prompt, skin[:-1])
    assert skin[-1] not in row0 and skin[-1] in row1
    # " Now" names the brand "now", which neither row has, but row 0 may be on its way to "Now Foods"
    row0, row1 = banned(processor, prompt, now[:-1])
    assert now[-1] not in row0 and now[-1] in row1
    # ... and having written " Now" there, it must finish "Now Foods": the brand "now" alone is not allowed
    foods = ids(tok, " Now Foods")[len(now) :]
    fresh = ids(tok, " Now Fresh Oil")[len(now) :]
    row0, row1 = banned(processor, prompt, now)
    free = set(range(500)) - row0  # the next tokens of allowed phrases (and their spelling variants) only
    assert len(foods) == 1 and {foods[0], fresh[0]} <= free and len(free) < 10
    # the obligation lasts until an allowed phrase is complete, however many tokens that takes
    assert len(fresh) >= 3
    for k in range(1, len(fresh)):
        row0, _ = banned(processor, prompt, now + fresh[:k])
        assert fresh[k] in set(range(500)) - row0 and len(row0) > 490
    row0, _ = banned(processor, prompt, now + fresh)
    assert len(row0) < 50  # "Now Fresh Oil" is done: free again
    # a token on the allowed path stays open even where another match would ban it: " Foods" alone names
    # a brand no row has (banned at the root), but after " Now" it continues "Now Foods"
    assert foods[0] in banned(processor, prompt, [])[0] and foods[0] not in banned(processor, prompt, now)[0]
    assert foods[0] in row1 and len(row1) < 50  # row 1 may name neither brand, and nothing is forced
    # matching restarts after other text
    row0, row1 = banned(processor, prompt, [*prompt, *skin[:-1]])
    assert skin[-1] in row1
    # a title added later protects its own path: quoting it cannot stop at the brand inside
    title = " Now Foods Rose Hip Oil"
    trie.add({title.strip(): {"item:7"}})
    quoting = GroundedPhrasesProcessor(trie, [{"item:7"}], len(prompt))
    words = ids(tok, title)
    brand_end = len(ids(tok, " Now Foods"))
    (row,) = banned(quoting, prompt, words[:brand_end])
    assert set(range(500)) - row == {words[brand_end]}  # on with the title, not off after "Now Foods"
    (row,) = banned(quoting, prompt, [])
    assert not {words[0]} & row
    # rows of a beam share their batch row's allowed set
    beams = GroundedPhrasesProcessor(trie, [{"cat:hair"}], len(prompt), num_beams=2)
    assert beams.root_banned[0] == processor.root_banned[1]


class _Write(LogitsProcessor):
    """Pushes a fixed token sequence into the output, as a model that wants to name it would."""

    def __init__(self, tokens: list[int], prompt_length: int, inner: LogitsProcessor | None = None):
        self.tokens, self.prompt_length, self.inner = tokens, prompt_length, inner

    def __call__(self, input_ids, scores):
        k = input_ids.shape[1] - self.prompt_length
        if k < len(self.tokens):
            scores[:, self.tokens[k]] += 1e4
        return scores if self.inner is None else self.inner(input_ids, scores)


def test_a_model_that_names_a_foreign_brand_is_stopped(tmp_path):
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path, ds.catalog, tied=False)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    vocab = AttributeVocabulary.from_catalog(ds.catalog)
    item, history = 0, [1, 2]
    allowed = vocab.attributes_of(ds.catalog[item]) | vocab.attributes_of_all(ds.catalog[j] for j in history)
    foreign = next(
        s
        for s, attrs in vocab.surfaces.items()
        if attrs.isdisjoint(allowed) and any(a.kind == "brand" for a in attrs)
    )
    tokens = ids(tok, " " + foreign)
    trie = PhraseTrie(tok, vocab.surfaces)
    config = ExplanationConfig(max_new_tokens=len(tokens) + 2)

    def run(grounded: bool) -> str:
        def factory(n: int) -> LogitsProcessor:
            return _Write(tokens, n, GroundedPhrasesProcessor(trie, [allowed], n) if grounded else None)

        return generate_texts(model, tok, ["Why?"], config, logits_processors=lambda n: [factory(n)])[0]

    free, grounded = run(False), run(True)
    checks = check_explanations([free, grounded], [history] * 2, [item] * 2, ds.catalog, vocab)
    assert foreign.lower() in free.lower() and checks[0].hallucinated
    assert not checks[1].hallucinated and foreign.lower() not in grounded.lower()


TITLES = ["Caress Beauty Bar Soap, Endless Kiss, 4 Ounce", "Dove Bar Soap (White) - 16 Count"]


@pytest.fixture(scope="module")
def quote_tok():
    text = " ".join(f'"{t}" and "{t.lower()}", Endless Kicks. ' for t in TITLES)
    return tiny_tokenizer([text] * 20)


def test_title_cuts():
    assert title_cuts(TITLES[0]) == {
        len("Caress Beauty Bar Soap"),
        len("Caress Beauty Bar Soap, Endless Kiss"),
        len(TITLES[0]),
    }
    assert title_cuts(TITLES[1]) == {len("Dove Bar Soap"), len("Dove Bar Soap (White)"), len(TITLES[1])}
    assert title_cuts("Serum, 1 oz") == {len("Serum, 1 oz")}  # a one-word cut names nothing


def test_quotations_must_copy_a_shown_title(quote_tok):
    tok = quote_tok
    processor = QuotedTitlesProcessor(tok, [TITLES], prompt_length=0)
    closing = set(processor.closing)
    assert closing and all(tok.decode([t]).startswith('"') for t in closing)
    titles = processor.titles[0]

    def allowed(text: str) -> set[int] | None:
        return processor.allowed_tokens(ids(tok, text), titles)

    assert allowed("It suits you.") is None  # outside a quotation: free
    assert allowed('"Caress Beauty Bar Soap" is') is None  # closed again
    assert allowed('It is "Caress Beauty') == {ids(tok, TITLES[0][len("Caress Beauty") :])[0]}
    # a natural cut: close here or go on copying
    assert allowed('"Caress Beauty Bar Soap') == closing | {ids(tok, ", Endless")[0]}
    assert allowed('"' + TITLES[0]) == closing  # the whole title: only a closing quote
    # "Endless Kicks" is no shown title's text: the tokens that would write it are not among those allowed
    after_kiss = allowed('"Caress Beauty Bar Soap, Endless K')
    assert after_kiss == {ids(tok, TITLES[0][len("Caress Beauty Bar Soap, Endless K") :])[0]}
    assert allowed('"Nothing like a title') is None  # a quotation no title starts with is left alone
    both = allowed('"')  # an open quotation may start either title
    assert both == {ids(tok, TITLES[0])[0], ids(tok, TITLES[1])[0]}


def test_a_model_that_respells_a_quoted_title_is_made_to_copy_it(tmp_path):
    """A scripted model writes a quotation that drifts off the item's title; with the processor the text
    quotes the title exactly and closes the quote, and the checker finds the item, not a hallucination."""
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path, ds.catalog, tied=False)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    item = ds.catalog[0]
    title = item.title.strip()
    words = title.split()
    drift = '"' + " ".join(words[:1] + ["Zzyzx"] + words[1:])
    script = ids(tok, drift)
    processor = QuotedTitlesProcessor(tok, [[title]], prompt_length=0)
    budget = max(len(script), len(ids(tok, f'"{title}"'))) + 1
    config = ExplanationConfig(max_new_tokens=budget, whole_sentences=False)

    def run(copy: bool) -> str:
        def processors(n: int) -> list[LogitsProcessor]:
            quoted = QuotedTitlesProcessor(tok, [[title]], n, closing=processor.closing)
            return [_Write(script, n, quoted if copy else None)]

        return generate_texts(model, tok, ["Why?"], config, logits_processors=processors)[0]

    free, copied = run(False), run(True)
    assert free.startswith(drift) and copied.startswith(f'"{title}"')
    vocab = AttributeVocabulary.from_catalog(ds.catalog)
    (check,) = check_explanations([copied], [[]], [0], ds.catalog, vocab)
    assert check.faithful and [m.source for m in check.mentions][:1] == ["item"]


def test_a_copied_title_is_not_cut_by_a_phrase_ban_inside_it(quote_tok):
    """'Endless' is a brand this row may not name, but inside a quotation of the item's title it is the
    title's own word: the quotation goes on; outside the quotation the ban holds."""
    tok = quote_tok
    trie = PhraseTrie(tok, {"Endless": {"brand:endless"}})
    prefix = ids(tok, '"Caress Beauty Bar Soap,')
    endless = ids(tok, TITLES[0][len("Caress Beauty Bar Soap,") :])[0]

    def scores_after(tokens: list[int], copy: bool) -> torch.Tensor:
        grounding = GroundedPhrasesProcessor(trie, [set()], prompt_length=0)
        processor = QuotedTitlesProcessor(tok, [TITLES], 0, grounding=grounding) if copy else grounding
        return processor(torch.tensor([tokens]), torch.zeros(1, len(tok)))[0]

    assert scores_after(prefix, copy=False)[endless] == -float("inf")  # grounding alone cuts the title
    assert scores_after(prefix, copy=True)[endless] == 0.0
    outside = ids(tok, '"Caress Beauty Bar Soap" is')
    assert torch.isinf(scores_after(outside, copy=True)[ids(tok, " Endless")[0]])


def test_quotations_of_titles_with_their_own_quotes():
    from genrec.data.text import quotations

    title = 'Argan Oil, acclaimed as "Liquid Gold" by all'
    text = f'"{title}" is an oil. You liked "Dove Bar Soap'
    plain = quotations(text)  # without the titles, the title's own quotes end the first quotation
    assert [q.quoted for q in plain][:2] == ["Argan Oil, acclaimed as ", " by all"]
    spans = quotations(text, [title])
    assert [(q.quoted, q.closed) for q in spans] == [(title, True), ("Dove Bar Soap", False)]
    assert text[spans[0].start : spans[0].end] == f'"{title}"' and spans[1].end == len(text)
    copying = quotations('It is "Argan Oil, acclaimed as "Liq', [title])  # still inside, copying
    assert [(q.quoted, q.closed) for q in copying] == [('Argan Oil, acclaimed as "Liq', False)]
