import json

import pytest
from PIL import Image

from genrec.data import load_generic, read_items_jsonl
from genrec.errors import DataFormatError, UnknownItemError

CSV = "user,item,timestamp,rating\nalice,b,2024-01-02T00:00:00,5\nalice,a,2024-01-01T00:00:00,4\n"
CSV += "alice,c,2024-01-03T00:00:00,1\nbob,c,5,1\nbob,a,3,1\nbob,b,4,1\nbob,a,9,1\n"


@pytest.fixture()
def items_path(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    rows = [
        {"id": "a", "title": "Alpha &amp; Co", "brand": "X", "image": "a.png"},
        {"id": "b", "title": "Beta", "categories": ["k1", "k2"], "image": "missing.png"},
        {"id": "c", "title": "Gamma", "image": "https://example.com/c.png"},
        {"id": "d"},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generic_csv_with_items(tmp_path, items_path):
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    ds = load_generic(path, items_path)
    assert ds.name == "events"
    assert ds.catalog.ids == ["a", "b", "c"]  # d has no interactions
    assert ds.users == ["alice", "bob"]
    # ISO dates and numbers both order events; bob's repeated "a" keeps the first (t=3)
    assert [s.tolist() for s in ds.sequences] == [[0, 1, 2], [0, 1, 2]]
    a, b, c = ds.catalog
    assert a.title == "Alpha & Co" and a.fields == {"brand": "X"}
    assert a.image == str((tmp_path / "a.png").resolve())
    assert b.image is None and b.fields == {"categories": ["k1", "k2"]}  # missing file -> no image
    assert c.image == "https://example.com/c.png"


def test_generic_jsonl_and_tsv_without_items(tmp_path):
    rows = [{"uid": 1, "iid": "x", "ts": 3}, {"uid": 1, "iid": "y", "ts": 1}, {"uid": 1, "iid": "z", "ts": 2}]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_generic(path, user_column="uid", item_column="iid", time_column="ts")
    assert ds.catalog.ids == ["x", "y", "z"] and ds.catalog.titles == ["", "", ""]
    assert ds.sequences[0].tolist() == [1, 2, 0]
    tsv = tmp_path / "log.tsv"
    tsv.write_text("user\titem\ttimestamp\nu\tx\t1\nu\ty\t2\nu\tz\t3\n")
    assert load_generic(tsv).sequences[0].tolist() == [0, 1, 2]


def test_generic_k_core(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"u{u},i{i},{i}\n" for u in range(3) for i in range(3))
                    + "u0,rare,9\n")  # fmt: skip
    assert load_generic(path, k_core=2).catalog.ids == ["i0", "i1", "i2"]


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (
            "user,item\nu,a\n",
            DataFormatError,
            r"e.csv:1: header lacks required column\(s\) timestamp \(found: user, item\)",
        ),
        ("user,item,timestamp\nu,a,1\nu,zz,2\n", UnknownItemError, r"'zz' \(.*e.csv:3\)"),
        (
            "user,item,timestamp\nu,a,1\nu,b,yesterday\n",
            DataFormatError,
            r"e.csv:3: timestamp must be a number or ISO",
        ),
        ("user,item,timestamp\nu,a\n", DataFormatError, r"e.csv:2: expected 3 columns"),
        ("user,item,timestamp\n,a,1\n", DataFormatError, r"e.csv:2: empty value in column 'user'"),
        ("user,item,timestamp\n", DataFormatError, r"e.csv: no interactions"),
        ("", DataFormatError, r"e.csv: file is empty"),
    ],
)
def test_generic_bad_interactions(tmp_path, items_path, content, error, match):
    path = tmp_path / "e.csv"
    path.write_text(content)
    with pytest.raises(error, match=match):
        load_generic(path, items_path)


def test_generic_bad_jsonl_and_suffix(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"user": "u", "item": "a", "timestamp": 1}\n{"user": "u", "item": "b"}\n')
    with pytest.raises(DataFormatError, match=r"e.jsonl:2: missing required field\(s\) timestamp"):
        load_generic(path)
    other = tmp_path / "e.parquet"
    other.write_text("x")
    with pytest.raises(DataFormatError, match="unknown interactions format"):
        load_generic(other)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (
            '{"id": "a"}\n{"id": "a", "title": "again"}\n',
            r"items.jsonl:2: duplicate item id 'a' \(first on line 1\)",
        ),
        ('{"id": "a"}\n{"title": "no id"}\n', r"items.jsonl:2: missing required field 'id'"),
        ('{"id": "a"}\nnot json\n', r"items.jsonl:2: invalid JSON"),
        ("", r"items.jsonl: file is empty"),
    ],
)
def test_items_jsonl_bad_input(tmp_path, lines, match):
    path = tmp_path / "items.jsonl"
    path.write_text(lines)
    with pytest.raises(DataFormatError, match=match):
        read_items_jsonl(path)


@pytest.mark.parametrize("column", ["user", "item", "timestamp"])
def test_generic_null_required_value_names_file_line_field(tmp_path, column):
    rows = [
        {"user": "u", "item": "a", "timestamp": 1},
        {"user": "u", "item": "b", "timestamp": 2, column: None},
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=rf"e.jsonl:2: required field\(s\) {column} are null"):
        load_generic(path)


def test_items_jsonl_null_is_missing_not_none(tmp_path):
    rows = [
        {"id": "a", "title": None, "brand": None, "categories": ["k1", None], "image": None, "rank": 0},
        {"id": None, "title": "no id"},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    item = read_items_jsonl(path)["a"]
    assert (item.title, item.image) == ("", None)
    assert item.fields == {"categories": ["k1"], "rank": 0}  # null brand left out; 0 is a value, kept
    assert "None" not in json.dumps(item.fields)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"items.jsonl:2: missing required field 'id'"):
        read_items_jsonl(path)
