"""Bench protocol helpers: the test-evaluation counter, the predictions path rule, cached beam candidates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from walk import N_ITEMS, walk_dataset

import bench.common as common
from genrec.data.dataset import Catalog, Item
from genrec.decoding import merge_beams
from genrec.eval import load_predictions
from genrec.model.compact import CompactConfig, CompactRecommender, recommend_merged


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


def test_merged_lists_are_merge_beams_in_chunks():
    rng = np.random.default_rng(0)
    users, items, beams = 1100, 300, 12  # three chunks of 500 rows
    found = [
        {
            "top": np.stack([rng.permutation(items)[:beams] for _ in range(users)]),
            "beam": -np.sort(rng.random((users, beams)), axis=1).astype(np.float32),
            "head": np.log(rng.dirichlet(np.ones(items), users)).astype(np.float16),
        }
        for _ in range(2)
    ]
    targets = found[1]["top"][:, 3].copy()
    targets[::2] = items  # half the targets in no beam: candidate recall .5
    lists, candidate_recall = common.merged_lists(found, 2.0, targets)
    expected, _ = merge_beams(
        [torch.from_numpy(f["top"]) for f in found],
        [torch.from_numpy(f["beam"]) for f in found],
        [torch.from_numpy(f["head"].astype(np.float32)) for f in found],
        2.0,
        10,
    )
    np.testing.assert_array_equal(lists, expected.numpy())
    assert candidate_recall == 0.5


def test_cached_candidates_merge_as_the_models_recommend(tmp_path):
    """Searching once and re-ranking per weight gives what recommend gives at that weight; the cache is keyed
    by the weights and the histories, so a changed model is searched again."""
    dataset = walk_dataset()
    tiny = CompactConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_items=6)
    tokens = [[f"<a_{i // 8}>", f"<b_{i % 8}>"] for i in range(N_ITEMS)]
    histories = dataset.test_examples().histories[:40]
    models = []
    for seed in (0, 1):
        model = CompactRecommender.from_item_tokens(
            tokens, dataclasses.replace(tiny, item_head_weight=1.0), dataset.catalog.fingerprint(), seed=seed
        )
        model.save_pretrained(tmp_path / f"m{seed}")
        models.append(model)
    found = [
        common.beam_candidates(tmp_path / f"m{s}", histories, dataset.catalog, 12, tmp_path / f"m{s}")
        for s in (0, 1)
    ]
    for weight in (0.0, 2.0):
        alone, _ = common.merged_lists(found[:1], weight)
        np.testing.assert_array_equal(
            alone, models[0].recommend(histories, num_beams=12, item_weight=weight)[0]
        )
        merged, _ = common.merged_lists(found, weight)
        np.testing.assert_array_equal(
            merged, recommend_merged(models, histories, num_beams=12, item_weight=weight)[0]
        )
    again = common.beam_candidates(tmp_path / "m0", histories, dataset.catalog, 12, tmp_path / "m0")
    np.testing.assert_array_equal(again["top"], found[0]["top"])
    assert len(list((tmp_path / "m0").glob("beam12-*.npz"))) == 1  # read from the cache
    models[1].save_pretrained(tmp_path / "m0")  # another model in the same folder
    moved = common.beam_candidates(tmp_path / "m0", histories, dataset.catalog, 12, tmp_path / "m0")
    np.testing.assert_array_equal(moved["top"], found[1]["top"])
    assert len(list((tmp_path / "m0").glob("beam12-*.npz"))) == 2

    no_head = CompactRecommender.from_item_tokens(tokens, tiny, dataset.catalog.fingerprint())
    no_head.save_pretrained(tmp_path / "plain")
    plain = common.beam_candidates(tmp_path / "plain", histories, dataset.catalog, 10, tmp_path / "plain")
    assert plain["head"] is None
    lists, _ = common.merged_lists([plain], 2.0)
    np.testing.assert_array_equal(lists, no_head.recommend(histories, num_beams=10, item_weight=2.0)[0])
