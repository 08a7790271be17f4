"""Bench protocol helpers: the test-evaluation counter and the per-model predictions path rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bench.common as common
from genrec.data.dataset import Catalog, Item
from genrec.eval import load_predictions


@pytest.fixture
def counts_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "results" / "test_evaluations.json"
    monkeypatch.setattr(common, "TEST_EVALUATIONS", path)
    return path


def test_counts_per_bench_and_config(counts_file):
    a, b = {"lr": 1e-3, "layers": 2}, {"lr": 3e-3, "layers": 2}
    assert common.count_test_evaluation("bench_x", a) == {"this_config": 1, "all_configs": 1}
    assert common.count_test_evaluation("bench_x", dict(reversed(a.items()))) == {
        "this_config": 2,  # key order does not make a new configuration
        "all_configs": 2,
    }
    assert common.count_test_evaluation("bench_x", b) == {"this_config": 1, "all_configs": 3}
    assert common.count_test_evaluation("bench_y", a) == {"this_config": 1, "all_configs": 1}
    saved = json.loads(counts_file.read_text(encoding="utf-8"))
    assert sorted(saved) == ["bench_x", "bench_y"]
    assert sorted(e["count"] for e in saved["bench_x"].values()) == [1, 2]
    assert {json.dumps(e["config"], sort_keys=True) for e in saved["bench_x"].values()} == {
        json.dumps(a, sort_keys=True),
        json.dumps(b, sort_keys=True),
    }


def test_predictions_path_rule(tmp_path):
    assert common.predictions_path("runs/p.jsonl", "SASRec") == Path("runs/p.sasrec.jsonl")
    assert common.predictions_path("p.jsonl", "Compact SID Llama") == Path("p.compact-sid-llama.jsonl")
    assert common.predictions_path("out/preds", "Popularity") == Path("out/preds.popularity.jsonl")
    catalog = Catalog([Item("i0"), Item("i1")])
    assert common.save_model_predictions(None, "SASRec", ["u"], np.array([[1]]), catalog) is None
    written = common.save_model_predictions(
        tmp_path / "p.jsonl", "SASRec", ["u"], np.array([[1, 0]]), catalog
    )
    assert written == str(tmp_path / "p.sasrec.jsonl")
    assert load_predictions(written) == {"u": ["i1", "i0"]}


def test_per_user_hits_known_answer():
    top = np.array([[5, 7, 9], [1, 2, 3], [4, 8, 6]])
    hits = common.per_user_hits(top, np.array([7, 0, 4]))  # rank 2, absent, rank 1
    np.testing.assert_allclose(hits["recall@10"], [1, 0, 1])
    np.testing.assert_allclose(hits["ndcg@10"], [1 / np.log2(3), 0, 1])
