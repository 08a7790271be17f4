"""SID tokens: added once as atomic special tokens, embeddings resized, item token table consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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


@pytest.mark.parametrize("tied", [True, False])
def test_sid_rows_start_from_their_items_text(tmp_path, tied):
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path, ds.catalog, tied=tied)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    old = len(tok)
    before = model.get_input_embeddings().weight[:old].clone()
    sid = tiny_sid(ds.catalog)
    add_sid_tokens(tok, model, sid, item_texts=ds.catalog.titles)
    matrices = [model.get_input_embeddings().weight]
    if not tied:
        matrices.append(model.get_output_embeddings().weight)
    assert torch.equal(model.get_input_embeddings().weight[:old], before)  # the vocabulary is untouched
    words = tok(ds.catalog.titles, add_special_tokens=False)["input_ids"]
    for matrix in matrices:
        scale = matrix[:old].norm(dim=-1).mean()
        for level, value in [(0, 0), (0, 2), (1, 3), (2, 1)]:
            members = np.flatnonzero(sid.codes[:, level] == value)
            expected = torch.stack([matrix[torch.tensor(words[i])].mean(0) for i in members]).mean(0)
            row = matrix[tok.convert_tokens_to_ids(sid.token(level, value))]
            assert torch.nn.functional.cosine_similarity(row, expected, dim=0) > 0.9999
            torch.testing.assert_close(row.norm(), scale)
    # no item carries <a_3> (40 items, 16 per first-level code): its row keeps the resize default
    unused = model.get_input_embeddings().weight[tok.convert_tokens_to_ids(sid.token(0, 3))]
    assert not torch.allclose(unused.norm(), matrices[0][:old].norm(dim=-1).mean())


def test_sid_text_init_needs_one_text_per_item(base):
    ds, path = base
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    old = len(tok)
    with pytest.raises(ValueError, match="item texts"):
        add_sid_tokens(tok, model, tiny_sid(ds.catalog), item_texts=["only one"])
    assert len(tok) == old  # rejected before anything changed
