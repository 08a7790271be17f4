"""encode_items with the bundled all-MiniLM-L6-v2 on three items: shape, normalisation, disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrec.data.dataset import Catalog, Item
from genrec.embed import default_cache_dir, encode_items, load_text_encoder
from genrec.errors import DataFormatError

CATALOG = Catalog(
    [
        Item("1", "Red nail polish", {"brand": "OPI", "categories": ["Beauty", "Nails"]}),
        Item("2", "Crimson nail lacquer", {"brand": "Essie", "categories": ["Beauty", "Nails"]}),
        Item("3", "Anti-dandruff shampoo", {"categories": ["Beauty", "Hair"], "price": 7.0}),
    ]
)


@pytest.fixture(scope="module")
def counting_model():
    """The real MiniLM with its ``encode`` wrapped to count calls (loading is not mocked)."""
    model = load_text_encoder(device="cpu")
    original = model.encode
    calls = []

    def encode(texts, **kwargs):
        calls.append(list(texts))
        return original(texts, **kwargs)

    model.encode = encode
    return model, calls


def test_embeddings_are_normalised_and_semantic(counting_model, tmp_path):
    model, _ = counting_model
    emb = encode_items(CATALOG, model=model, cache_dir=tmp_path, show_progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]  # two nail polishes are closer than polish and shampoo


def test_second_call_hits_the_cache(counting_model, tmp_path):
    model, calls = counting_model
    before = len(calls)
    first = encode_items(CATALOG, model=model, cache_dir=tmp_path, show_progress=False)
    assert len(calls) == before + 1
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    second = encode_items(CATALOG, model=model, cache_dir=tmp_path, show_progress=False)
    assert len(calls) == before + 1  # served from disk
    np.testing.assert_array_equal(first, second)
    # A different template changes the texts and therefore the key: re-encoded, second cache file.
    encode_items(CATALOG, model=model, template="{{ title }}", cache_dir=tmp_path, show_progress=False)
    assert len(calls) == before + 2
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_corrupted_cache_file_is_re_encoded(counting_model, tmp_path):
    model, calls = counting_model
    encode_items(CATALOG, model=model, cache_dir=tmp_path, show_progress=False)
    (cache_file,) = tmp_path.glob("*.safetensors")
    cache_file.write_bytes(b"truncated")
    before = len(calls)
    emb = encode_items(CATALOG, model=model, cache_dir=tmp_path, show_progress=False)
    assert len(calls) == before + 1 and emb.shape == (3, 384)


def test_model_by_path_matches_loaded_model(counting_model, tmp_path):
    model, _ = counting_model
    by_object = encode_items(CATALOG, model=model, use_cache=False, show_progress=False)
    by_default = encode_items(CATALOG, cache_dir=tmp_path, show_progress=False)
    np.testing.assert_allclose(by_object, by_default, atol=1e-5)


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    monkeypatch.delenv("GENREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "genrec" / "embeddings"


def test_empty_catalog_is_an_error():
    with pytest.raises(DataFormatError, match="empty"):
        encode_items(Catalog([]))
