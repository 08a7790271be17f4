"""Saved top-K lists: original ids, atomic JSONL, a reader that round-trips, and scores that re-score."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrec.baselines import Popularity
from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.errors import DataFormatError
from genrec.eval import evaluate_topk, load_predictions, save_predictions


@pytest.fixture
def dataset() -> SequenceDataset:
    catalog = Catalog([Item(f"B00{i}") for i in range(6)])
    seqs = [[0, 1, 2, 5, 4], [1, 2, 5, 4], [2, 1, 0, 3, 5]]
    return SequenceDataset("toy", catalog, ["A1", "zz", "u-7"], seqs)


def test_writes_original_ids_and_round_trips(tmp_path, dataset):
    items = np.array([[1, 2, 0], [4, 5, -1], [3, 0, 1]])
    path = save_predictions(tmp_path / "sub" / "preds.jsonl", dataset.users, items, dataset.catalog)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"user": "A1", "items": ["B001", "B002", "B000"]}
    assert json.loads(lines[1]) == {"user": "zz", "items": ["B004", "B005"]}  # -1 padding left out
    loaded = load_predictions(path)
    assert list(loaded) == dataset.users
    for user, row in zip(dataset.users, items):
        assert loaded[user] == [dataset.catalog[i].id for i in row if i >= 0]
    assert not [p for p in path.parent.iterdir() if p.name != "preds.jsonl"]  # no temp file left


def test_saved_lists_score_like_the_reported_metrics(tmp_path, dataset):
    """Someone else's evaluator, reading only the file and the split, gets the numbers we report."""
    ex = dataset.test_examples()
    top, _ = Popularity().fit(dataset).recommend(ex.histories, k=5)
    path = save_predictions(tmp_path / "pop.jsonl", ex.users, torch.from_numpy(top), dataset.catalog)
    loaded = load_predictions(path)
    rescored = np.stack([dataset.catalog.indices_of(loaded[u]) for u in ex.users])
    assert evaluate_topk(rescored, ex.targets, ks=(1, 5)) == evaluate_topk(top, ex.targets, ks=(1, 5))


def test_bad_input_raises_and_leaves_no_file(tmp_path, dataset):
    path = tmp_path / "p.jsonl"
    with pytest.raises(ValueError, match="outside"):
        save_predictions(path, dataset.users, np.array([[0], [6], [1]]), dataset.catalog)
    with pytest.raises(ValueError, match="3 users but 2 lists"):
        save_predictions(path, dataset.users, np.zeros((2, 1), dtype=np.int64), dataset.catalog)
    with pytest.raises(ValueError, match="unique"):
        save_predictions(path, ["a", "a"], np.zeros((2, 1), dtype=np.int64), dataset.catalog)
    with pytest.raises(ValueError, match="integer"):
        save_predictions(path, dataset.users, np.zeros((3, 1)), dataset.catalog)
    assert not path.exists()


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"user": "a", "items": ["1"]}\n{"user": "a", "items": []}\n', "duplicate user"),
        ('{"user": "a", "items": [1]}\n', "list of strings"),
        ('{"user": "a"}\n', "expected"),
        ("not json\n", "invalid JSON"),
    ],
)
def test_reader_names_the_bad_line(tmp_path, text, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=match) as err:
        load_predictions(path)
    assert err.value.line in (1, 2) and str(path) in str(err.value)
