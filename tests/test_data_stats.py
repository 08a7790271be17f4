import pytest
from PIL import Image

from genrec.data import Catalog, Item, SequenceDataset, dataset_stats, plot_length_histogram


@pytest.fixture()
def ds():
    catalog = Catalog([Item(str(i)) for i in range(10)])
    seqs = [[0, 1, 2], [0, 1, 2, 3], [4, 5, 6, 7, 8], [1, 2, 3]]
    return SequenceDataset("toy", catalog, ["a", "b", "c", "d"], seqs)


def test_dataset_stats_known_answer(ds):
    stats = dataset_stats(ds)
    assert stats["users"] == 4 and stats["items"] == 10 and stats["interactions"] == 15
    assert stats["items_with_interactions"] == 9  # item 9 is never used
    assert stats["density"] == pytest.approx(15 / 40)
    assert stats["length"] == {"min": 3, "mean": 3.75, "median": 3.5, "p90": pytest.approx(4.7), "max": 5}
    # one bin per length 3, 4, 5
    assert stats["histogram"]["counts"] == [2, 1, 1]
    assert stats["histogram"]["edges"] == [2.5, 3.5, 4.5, 5.5]


def test_histogram_bins_cap(ds):
    catalog = Catalog([Item(str(i)) for i in range(200)])
    long = SequenceDataset("long", catalog, ["a", "b"], [list(range(3)), list(range(200))])
    hist = dataset_stats(long, num_bins=10)["histogram"]
    assert len(hist["counts"]) == 10 and sum(hist["counts"]) == 2


def test_plot_length_histogram(ds, tmp_path):
    path = plot_length_histogram(ds, tmp_path / "plots" / "lengths.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100
    assert [p.name for p in path.parent.iterdir()] == ["lengths.png"]  # no temp file left behind
