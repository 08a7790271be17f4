import numpy as np
import pytest

from genrec.data import Catalog, Item, build_dataset, load_dataset
from genrec.errors import DataFormatError, UnknownItemError


def _toy():
    catalog = Catalog([Item(str(i), f"item {i}") for i in range(6)])
    return build_dataset(
        "toy", catalog, [("u1", ["0", "1", "2", "3"]), ("u2", ["5", "4", "3"]), ("u3", ["1", "2"])]
    )


def test_leave_one_out_split():
    ds = _toy()
    assert ds.users == ["u1", "u2"]  # u3 has 2 interactions and is dropped
    assert [s.tolist() for s in ds.train_sequences()] == [[0, 1], [5]]
    valid, test = ds.valid_examples(), ds.test_examples()
    assert [h.tolist() for h in valid.histories] == [[0, 1], [5]]
    assert valid.targets.tolist() == [2, 4]
    assert [h.tolist() for h in test.histories] == [[0, 1, 2], [5, 4]]
    assert test.targets.tolist() == [3, 3]
    assert test.targets.dtype == np.int64
    # popularity counts training interactions only: the targets 2, 3, 4 do not leak
    assert ds.item_popularity().tolist() == [1, 1, 0, 0, 0, 1]


def test_without_last_training_item_keeps_targets_and_short_users():
    ds = _toy()
    held = ds.without_last_training_item([0, 1])
    assert [s.tolist() for s in held.train_sequences()] == [[0], [5]]  # u2's only training item stays
    for split in ("valid", "test"):
        assert held.examples(split).targets.tolist() == ds.examples(split).targets.tolist()
    assert [s.tolist() for s in ds.train_sequences()] == [[0, 1], [5]]  # the original is unchanged
    assert held.users == ds.users


def test_build_dataset_unknown_item():
    catalog = Catalog([Item("a")])
    with pytest.raises(UnknownItemError, match="'zz'"):
        build_dataset("toy", catalog, [("u", ["a", "zz", "a"])])


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'no-such-dataset'"):
        load_dataset("no-such-dataset")


def test_load_dataset_detects_layout(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 1 2 3\n2 2 3 1\n")
    ds = load_dataset(tmp_path)
    assert (ds.num_users, ds.num_items) == (2, 3)
    with pytest.raises(ValueError, match="cannot tell the dataset layout"):
        (tmp_path / "empty").mkdir()
        load_dataset(tmp_path / "empty")


def test_load_dataset_synthetic_passes_kwargs():
    ds = load_dataset("synthetic", num_users=20, num_items=40, num_categories=4)
    assert ds.synthetic and ds.num_users == 20 and ds.num_items == 40


def test_catalog_duplicate_ids():
    with pytest.raises(DataFormatError, match="duplicate item id 'a'"):
        Catalog([Item("a"), Item("a")])
