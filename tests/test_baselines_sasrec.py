"""SASRec learns a sequential rule, stops early, resumes where it stopped, and round-trips to disk."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genrec.baselines import Popularity, SASRec, SASRecConfig, train_sasrec
from genrec.baselines.sasrec_train import training_arrays
from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.errors import CheckpointMismatchError, EmptyHistoryError
from genrec.eval import evaluate_recommender
from genrec.utils import read_json

NUM_ITEMS = 30


def successor_dataset(num_users: int = 120, seed: int = 0) -> SequenceDataset:
    """Every user walks i -> i+1 (mod N) from a random start: trivial for a sequence model,
    hopeless for popularity (all items about equally frequent)."""
    rng = np.random.default_rng(seed)
    catalog = Catalog([Item(str(i), title=f"item {i}") for i in range(NUM_ITEMS)])
    seqs = [(rng.integers(NUM_ITEMS) + np.arange(rng.integers(5, 9))) % NUM_ITEMS for _ in range(num_users)]
    return SequenceDataset("successor", catalog, [f"u{i}" for i in range(num_users)], seqs)


FAST = SASRecConfig(
    hidden=32, layers=1, heads=2, max_len=8, dropout=0.1, lr=5e-3, batch_size=32, epochs=12, num_threads=1
)


@pytest.fixture(scope="module")
def dataset() -> SequenceDataset:
    return successor_dataset()


@pytest.fixture(scope="module")
def trained(dataset) -> SASRec:
    return train_sasrec(dataset, FAST, progress=False)


def test_learns_successor_rule_far_better_than_popularity(dataset, trained):
    ex = dataset.test_examples()
    sas = evaluate_recommender(trained, ex, ks=(1, 10))
    pop = evaluate_recommender(Popularity().fit(dataset), ex, ks=(1, 10))
    assert sas["recall@1"] > 0.8
    assert sas["ndcg@10"] > 3 * pop["ndcg@10"]
    items, scores = trained.recommend([np.array([3, 4, 5])], k=3)
    assert items[0, 0] == 6
    assert np.all(np.diff(scores[0]) <= 0)


def test_history_records_every_epoch(trained):
    assert [h["epoch"] for h in trained.history] == list(range(1, FAST.epochs + 1))
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert all("valid_ndcg@10" in h for h in trained.history)


def test_states_do_not_depend_on_padding_or_batching(trained):
    histories = [np.array([1, 2, 3, 4, 5, 6, 7]), np.array([9]), np.array([20, 21, 22])]
    together = trained.user_states(histories)
    alone = torch.cat([trained.user_states([h]) for h in histories])
    assert together.shape == (3, FAST.hidden)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    scores = trained.scores(histories)
    assert scores.shape == (3, NUM_ITEMS)
    torch.testing.assert_close(scores, together @ trained.item_embeddings.detach().T, atol=1e-5, rtol=1e-5)


def test_long_history_keeps_the_most_recent_items(trained):
    long = np.arange(20) % NUM_ITEMS
    torch.testing.assert_close(trained.user_states([long]), trained.user_states([long[-FAST.max_len :]]))


def test_recommend_can_exclude_history(trained):
    history = np.array([3, 4, 5])
    items, _ = trained.recommend([history], k=NUM_ITEMS - 3, exclude_history=True)
    assert not set(items[0]) & set(history.tolist())


def test_save_load_round_trip(tmp_path, dataset, trained):
    trained.save_pretrained(tmp_path)
    loaded = SASRec.from_pretrained(tmp_path, catalog=dataset.catalog)
    assert loaded.config == trained.config
    histories = dataset.test_examples().histories
    assert torch.equal(loaded.scores(histories), trained.scores(histories))
    other = Catalog([Item(str(i)) for i in range(NUM_ITEMS, 2 * NUM_ITEMS)])
    with pytest.raises(CheckpointMismatchError):
        SASRec.from_pretrained(tmp_path, catalog=other)
    with pytest.raises(FileNotFoundError):
        SASRec.from_pretrained(tmp_path / "missing")


def test_early_stopping_triggers(dataset):
    # lr 0: the validation metric can never improve after the first evaluation
    config = dataclasses.replace(FAST, lr=0.0, epochs=50, patience=2, eval_every=1)
    model = train_sasrec(dataset, config, progress=False)
    assert [h["epoch"] for h in model.history] == [1, 2, 3]


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, dataset):
    short = dataclasses.replace(FAST, epochs=2)
    long = dataclasses.replace(FAST, epochs=4)
    train_sasrec(dataset, short, output_dir=tmp_path, progress=False)
    assert read_json(tmp_path / "checkpoint-2" / "trainer_state.json")["state"]["epoch"] == 2
    resumed = train_sasrec(dataset, long, output_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]
    straight = train_sasrec(dataset, long, progress=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    # the best model written next to the checkpoint loads as a plain SASRec
    SASRec.from_pretrained(tmp_path, catalog=dataset.catalog)
    # resume=False starts over
    fresh = train_sasrec(dataset, short, output_dir=tmp_path, resume=False, progress=False)
    assert [h["epoch"] for h in fresh.history] == [1, 2]


def test_time_budget_stops_resumably(tmp_path, dataset):
    config = dataclasses.replace(FAST, epochs=5, time_budget_s=1e-6)  # one epoch per call
    assert [
        h["epoch"] for h in train_sasrec(dataset, config, output_dir=tmp_path, progress=False).history
    ] == [1]
    assert [
        h["epoch"] for h in train_sasrec(dataset, config, output_dir=tmp_path, progress=False).history
    ] == [1, 2]


def test_resume_refuses_a_different_architecture(tmp_path, dataset):
    train_sasrec(dataset, dataclasses.replace(FAST, epochs=1), output_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatchError, match="hidden"):
        train_sasrec(
            dataset, dataclasses.replace(FAST, epochs=2, hidden=16), output_dir=tmp_path, progress=False
        )


def test_training_arrays_shift_and_pad():
    inputs, targets = training_arrays(
        [np.array([4, 5, 6]), np.array([7]), np.array([1, 2, 3, 4, 5])], max_len=3
    )
    # item + 1, left-padded; [7] has no pair; the long one keeps its last max_len + 1 items
    np.testing.assert_array_equal(inputs, [[0, 5, 6], [3, 4, 5]])
    np.testing.assert_array_equal(targets, [[-100, 5, 6], [3, 4, 5]])


def test_bad_input_raises(trained):
    with pytest.raises(EmptyHistoryError):
        trained.user_states([np.array([1]), np.array([], dtype=np.int64)])
    with pytest.raises(ValueError, match="outside"):
        trained.scores([np.array([NUM_ITEMS])])
    with pytest.raises(ValueError, match="1-D"):
        trained.scores([np.array([[1, 2]])])
    with pytest.raises(ValueError, match="integer"):
        trained.scores([np.array([1.0])])
    with pytest.raises(ValueError, match="empty"):
        trained.scores([])
    with pytest.raises(ValueError, match="k must be"):
        trained.recommend([np.array([1])], k=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="max_len"):
        trained(torch.ones(1, FAST.max_len + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="dropout"):
        SASRecConfig(dropout=1.0)
