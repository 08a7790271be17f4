"""Base-model resolution: hub ids pass through, GGUF files are checked, the cache honours $GENREC_CACHE."""

from __future__ import annotations

import pytest

from genrec.model import cache_dir, load_base_model
from genrec.model.loading import resolve_base_model


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "models"
    monkeypatch.delenv("GENREC_CACHE")
    assert cache_dir().parts[-3:] == (".cache", "genrec", "models")


def test_hub_ids_and_folders_pass_through(tmp_path):
    hub = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_base_model(hub).path == resolve_base_model(hub).spec == hub
    assert resolve_base_model(str(tmp_path)).spec == str(tmp_path)


def test_missing_gguf_and_bad_quantization(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        resolve_base_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError):
        resolve_base_model(str(tmp_path), gguf_file="nope.gguf")
    with pytest.raises(ValueError, match="quantization"):
        load_base_model(str(tmp_path), quantization="int3")
