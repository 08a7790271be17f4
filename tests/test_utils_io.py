"""Atomic folders: a reader sees one whole save or the previous one, never a mix."""

import pytest

from genrec.utils import atomic_directory


def save(path, epoch, fail=False):
    with atomic_directory(path) as folder:
        (folder / "weights").write_text(f"w{epoch}")
        if fail:
            raise RuntimeError("killed mid-save")
        (folder / "state").write_text(f"s{epoch}")


def test_each_save_replaces_the_last_whole(tmp_path):
    last = tmp_path / "last"
    save(last, 1)
    first_target = last.resolve()
    save(last, 2)
    assert (last / "weights").read_text() == "w2" and (last / "state").read_text() == "s2"
    assert not first_target.exists()  # the previous save is gone
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("last.")) == ["last"]


def test_a_failed_save_leaves_the_previous_one(tmp_path):
    last = tmp_path / "last"
    save(last, 1)
    with pytest.raises(RuntimeError, match="killed"):
        save(last, 2, fail=True)
    assert (last / "weights").read_text() == "w1" and (last / "state").read_text() == "s1"
    assert len(list(tmp_path.iterdir())) == 2  # the link and its one folder; the failed one is removed


def test_a_plain_folder_from_an_older_save_is_replaced(tmp_path):
    last = tmp_path / "last"
    last.mkdir()
    (last / "weights").write_text("old")
    save(last, 3)
    assert last.is_symlink() and (last / "weights").read_text() == "w3"
