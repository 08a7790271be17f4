"""SID tokens: added once as atomic special tokens, embeddings resized, item token table consistent."""

from __future__ import annotations

import pytest
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid
from transformers import AutoModelForCausalLM, AutoTokenizer

from genrec.model import add_sid_tokens, sid_vocab_ids


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    ds = tiny_dataset()
    return ds, tiny_base_model(tmp_path_factory.mktemp("base"), ds.catalog)


def test_add_sid_tokens_table_and_resize(base):
    ds, path = base
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    old = len(tok)
    sid = tiny_sid(ds.catalog)
    table = add_sid_tokens(tok, model, sid)
    assert table.shape == (len(ds.catalog), 3)
    assert len(tok) == old + sum(sid.codebook_sizes)  # one token per code value per level
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert (table >= old).all()
    for i in (0, 7, len(ds.catalog) - 1):
        text = "".join(sid.item_tokens(i))
        assert tok(text, add_special_tokens=False)["input_ids"] == table[i].tolist()  # never split
        assert tok.decode(table[i]) == text
    assert sorted(set(sid_vocab_ids(tok, sid).tolist())) == list(range(old, len(tok)))
    again = add_sid_tokens(tok, model, sid)  # idempotent
    assert (again == table).all() and len(tok) == old + sum(sid.codebook_sizes)


def test_missing_sid_tokens_are_reported(base):
    ds, path = base
    tok = AutoTokenizer.from_pretrained(path)
    with pytest.raises(KeyError, match="add_sid_tokens"):
        sid_vocab_ids(tok, tiny_sid(ds.catalog))
