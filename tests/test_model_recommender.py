"""GenerativeRecommender: generate (ids, titles, indices, batches, cold start, errors) and save/load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from genrec.data import Catalog, Item
from genrec.errors import CheckpointMismatchError, UnknownItemError
from genrec.model import GenerativeRecommender, LoraSettings, Recommendation


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path_factory.mktemp("base"), ds.catalog)
    sid = tiny_sid(ds.catalog)
    rec = GenerativeRecommender.build(ds.catalog, sid, base_model=path, lora=LoraSettings(r=4))
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: non-trivial adapter and SID rows
        for p in rec.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return ds, sid, rec, path


def test_generate_single_and_batch(setup):
    ds, sid, rec, _ = setup
    cat = ds.catalog
    one = rec.generate([cat[0].id, cat[3].title, 5], num_items=5, num_beams=8)
    assert isinstance(one, Recommendation) and len(one) == 5
    assert len(set(one.indices.tolist())) == 5
    assert np.all(np.diff(one.scores) <= 1e-6)  # best first
    assert one.item_ids == [cat[i].id for i in one.indices]
    assert one.semantic_ids == ["".join(sid.item_tokens(i)) for i in one.indices]
    same = rec.generate([[0, 3, 5], [1]], num_items=5, num_beams=8, batch_size=1)
    assert isinstance(same, list) and len(same) == 2
    assert same[0].indices.tolist() == one.indices.tolist()  # ids, titles and indices are interchangeable
    np.testing.assert_allclose(same[0].scores, one.scores, rtol=1e-4, atol=1e-4)
    items, scores = rec.recommend([np.array([0, 3, 5]), np.array([1])], k=5, num_beams=8)
    assert items.shape == scores.shape == (2, 5) and items[0].tolist() == one.indices.tolist()


def test_cold_start_and_unknown_items(setup):
    ds, _, rec, _ = setup
    cold = rec.generate([], num_items=3)
    assert len(cold) == 3 and "new user" in rec.prompt([]).lower()
    with pytest.raises(UnknownItemError, match="no-such-item"):
        rec.generate(["no-such-item"])
    with pytest.raises(UnknownItemError):
        rec.generate([len(ds.catalog)])
    with pytest.raises(TypeError):
        rec.generate(ds.catalog[0].id)


def test_generation_config_is_not_consulted(setup):
    _, _, rec, _ = setup
    before = rec.generate([1, 2], num_items=4)
    base = rec.model.get_base_model()
    base.generation_config.num_beams, base.generation_config.max_new_tokens = 1, 1
    after = rec.generate([1, 2], num_items=4)
    assert before.indices.tolist() == after.indices.tolist()


def test_save_load_round_trip(setup, tmp_path):
    ds, sid, rec, path = setup
    folder = rec.save_pretrained(tmp_path / "rec")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "genrec_config.json", "README.md"} <= names
    assert (folder / "semantic_ids" / "sid_config.json").is_file()
    assert (folder / "prompts" / "seqrec.yaml").is_file()
    loaded = GenerativeRecommender.from_pretrained(folder, ds.catalog)
    a = rec.generate([[0, 3, 5], [7]], num_items=6)
    b = loaded.generate([[0, 3, 5], [7]], num_items=6)
    for x, y in zip(a, b):
        assert x.indices.tolist() == y.indices.tolist()
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-5, atol=1e-5)
    # The folder is self-contained: without a catalog, the saved one is used.
    standalone = GenerativeRecommender.from_pretrained(folder)
    assert standalone.catalog.ids == ds.catalog.ids
    assert standalone.generate([0, 3, 5], num_items=6).indices.tolist() == a[0].indices.tolist()
    # The adapter is standard peft: it loads onto the base resized to the saved tokenizer.
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(path)
    base.resize_token_embeddings(len(tok), mean_resizing=False)
    plain = PeftModel.from_pretrained(base, folder)
    np.testing.assert_allclose(
        plain.get_input_embeddings().weight.detach().numpy(),
        rec.model.get_input_embeddings().weight.detach().numpy(),
    )


def test_mismatched_catalog_or_sid_map(setup, tmp_path):
    ds, _, rec, _ = setup
    folder = rec.save_pretrained(tmp_path / "rec")
    other = Catalog([Item(f"x{i}", title=f"X {i}") for i in range(len(ds.catalog))])
    with pytest.raises(CheckpointMismatchError, match="catalog"):
        GenerativeRecommender.from_pretrained(folder, other)
    shutil.rmtree(folder / "semantic_ids")
    tiny_sid(ds.catalog, shift=5).save_pretrained(folder / "semantic_ids")
    with pytest.raises(CheckpointMismatchError, match="SID map"):
        GenerativeRecommender.from_pretrained(folder, ds.catalog)
    config = json.loads((folder / "genrec_config.json").read_text())
    assert config["num_items"] == len(ds.catalog)


def test_wraps_the_compact_backbone(setup, tmp_path):
    from genrec.model.compact import CompactConfig, CompactRecommender

    ds, sid, _, _ = setup
    tokens = [sid.item_tokens(i) for i in range(len(ds.catalog))]
    config = CompactConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    compact = CompactRecommender.from_item_tokens(
        tokens, config, catalog_fingerprint=ds.catalog.fingerprint()
    )
    rec = GenerativeRecommender.from_compact(compact, ds.catalog, sid)
    out = rec.generate([[1, 2, 3], [4]], num_items=4)
    assert [len(r) for r in out] == [4, 4]
    loaded = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "c"), ds.catalog)
    assert loaded.generate([1, 2, 3], num_items=4).indices.tolist() == out[0].indices.tolist()


def test_wraps_merged_compact_channels(setup, tmp_path):
    """generate returns the channels' merged beams, and a save/load round trip keeps them merged."""
    import numpy as np

    from genrec.model.channels import MultiChannelRecommender
    from genrec.model.compact import CompactConfig, CompactRecommender

    ds, sid, _, _ = setup
    tokens = [sid.item_tokens(i) for i in range(len(ds.catalog))]
    config = CompactConfig(
        hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, item_head_weight=1.0
    )
    channels = [
        CompactRecommender.from_item_tokens(tokens, config, ds.catalog.fingerprint(), seed=seed)
        for seed in (0, 1)
    ]
    merged = MultiChannelRecommender(channels)
    rec = GenerativeRecommender.from_compact(merged, ds.catalog, sid)
    histories = [np.array([1, 2, 3]), np.array([4])]
    expected, _ = merged.recommend(histories, k=4, num_beams=6, item_weight=2.0)
    out = rec.generate([[1, 2, 3], [4]], num_items=4, num_beams=6, item_weight=2.0)
    assert [r.indices.tolist() for r in out] == expected.tolist()
    first, _ = channels[0].recommend(histories, k=4, num_beams=6, item_weight=2.0)
    assert not np.array_equal(first, expected)  # the second channel changes the lists
    folder = rec.save_pretrained(tmp_path / "merged")
    assert (folder / "compact" / "channel-1").is_dir()
    loaded = GenerativeRecommender.from_pretrained(folder, ds.catalog)
    again = loaded.generate([[1, 2, 3], [4]], num_items=4, num_beams=6, item_weight=2.0)
    assert [r.indices.tolist() for r in again] == expected.tolist()


def test_full_finetune_saves_the_whole_model(setup, tmp_path):
    ds, sid, _, path = setup
    rec = GenerativeRecommender.build(ds.catalog, sid, base_model=path, full_finetune=True)
    assert not hasattr(rec.model, "peft_config")
    assert all(p.requires_grad for p in rec.model.parameters())
    folder = rec.save_pretrained(tmp_path / "full")
    assert (folder / "model" / "model.safetensors").is_file()
    loaded = GenerativeRecommender.from_pretrained(folder, ds.catalog)
    assert (
        loaded.generate([2, 4], num_items=4).indices.tolist()
        == rec.generate([2, 4], num_items=4).indices.tolist()
    )


def test_unknown_sid_init_is_rejected(setup):
    ds = setup[0]
    with pytest.raises(ValueError, match="sid_init"):
        GenerativeRecommender.build(ds.catalog, tiny_sid(ds.catalog), sid_init="random")
