"""The explanation benches' text cache: an interrupted generation resumes, another key starts afresh."""

from __future__ import annotations

import pytest

from bench.explain_common import cached_texts, trained_model_key
from genrec.train import SFTRecipe


def test_interrupted_generation_resumes_and_new_key_starts_afresh(tmp_path):
    path = tmp_path / "texts.json"
    calls: list[tuple[int, int]] = []
    kill_at = {"start": 2}

    def produce(start: int, stop: int) -> list[str]:
        calls.append((start, stop))
        if start == kill_at["start"]:
            raise RuntimeError("killed")
        return [f"text {i}" for i in range(start, stop)]

    with pytest.raises(RuntimeError, match="killed"):  # killed during the second batch
        cached_texts(path, {"model": "a"}, 5, produce, batch_size=2, desc="test")
    calls.clear()
    kill_at["start"] = None
    texts = cached_texts(path, {"model": "a"}, 5, produce, batch_size=2, desc="test")
    assert texts == [f"text {i}" for i in range(5)]
    assert calls == [(2, 4), (4, 5)]  # the first batch came from the cache

    calls.clear()
    assert cached_texts(path, {"model": "a"}, 5, produce, 2, "test") == texts and calls == []
    fresh = cached_texts(path, {"model": "b"}, 3, lambda s, e: [f"new {i}" for i in range(s, e)], 2, "t")
    assert fresh == ["new 0", "new 1", "new 2"]


def test_base_model_texts_do_not_depend_on_training():
    recipe = SFTRecipe.from_dict({"data": {"tasks": {"explanation": 1.0}}})
    longer = SFTRecipe.from_dict({"data": {"tasks": {"explanation": 1.0}}, "train": {"max_steps": 500}})
    assert trained_model_key(recipe, 60, "base") == trained_model_key(longer, 120, "base")
    assert trained_model_key(recipe, 60, "adapter") != trained_model_key(recipe, 120, "adapter")
    assert trained_model_key(recipe, 60, "adapter") != trained_model_key(longer, 60, "adapter")
