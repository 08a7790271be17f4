import gzip
import json
import logging
from pathlib import Path

import pytest

from genrec.data import load_amazon_p5, load_amazon_reviews, load_reviews, read_amazon_meta
from genrec.errors import DataFormatError, UnknownItemError


def _gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# -- P5 folders ----------------------------------------------------------------------------------


@pytest.fixture()
def p5_dir(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 1 2 3 4\n2 2 3 1\n3 4 1\n10 3 1 2\n")
    maps = {
        "user2id": {"U1": "1", "U2": "2", "U3": "3", "U10": "10"},
        "item2id": {"A1": "1", "A2": "2", "A3": "3", "A4": "4"},
        "id2user": {"1": "U1", "2": "U2", "3": "U3", "10": "U10"},
        "id2item": {"1": "A1", "2": "A2", "3": "A3", "4": "A4"},
    }
    _gz(tmp_path / "datamaps.json.gz", json.dumps(maps))
    meta = [
        {"item_id": 1, "asin": "A1", "title": "OPI Nail Lacquer &amp;quot;Red&amp;quot;", "brand": "OPI",
         "categories": ["Beauty", "Nails"], "price": 12.0, "sales_type": "Beauty", "sales_rank": 3.0},
        {"item_id": 2, "asin": "A2", "title": "Soap  &amp; Water", "brand": "", "categories": [],
         "price": None, "sales_type": "", "sales_rank": None},
    ]  # fmt: skip
    _gz(tmp_path / "item_meta.jsonl.gz", _jsonl(meta))
    return tmp_path


def test_p5_known_answer(p5_dir):
    ds = load_amazon_p5(p5_dir)
    assert ds.name == p5_dir.name
    assert ds.catalog.ids == ["1", "2", "3", "4"]
    assert ds.users == ["1", "2", "10"]  # user 3 has 2 items and is dropped
    assert [s.tolist() for s in ds.sequences] == [[0, 1, 2, 3], [1, 2, 0], [2, 0, 1]]
    first, second, third = ds.catalog[0], ds.catalog[1], ds.catalog[2]
    assert first.title == 'OPI Nail Lacquer "Red"'
    assert first.fields == {"asin": "A1", "brand": "OPI", "categories": ["Beauty", "Nails"], "price": 12.0,
                            "sales_type": "Beauty", "sales_rank": 3.0}  # fmt: skip
    assert second.title == "Soap & Water" and second.fields == {"asin": "A2"}  # empty values dropped
    assert third.title == "" and third.fields == {"asin": "A3"}  # no metadata row
    assert ds.test_examples().targets.tolist() == [3, 0, 1]


def test_p5_without_metadata_or_item2id(tmp_path):
    # Toys layout: datamaps with only id2item; Sports/Toys have no item metadata.
    (tmp_path / "sequential_data.txt").write_text("1 3 1 2\n2 2 1 3\n")
    (tmp_path / "datamaps.json").write_text(json.dumps({"id2item": {"1": "X", "2": "Y", "3": "Z", "4": "W"}}))
    ds = load_amazon_p5(tmp_path)
    assert ds.catalog.ids == ["1", "2", "3", "4"]  # the catalog is the datamaps, even item 4 without events
    assert ds.catalog.titles == ["", "", "", ""]
    assert ds.catalog[3].fields == {"asin": "W"}


def test_p5_without_datamaps(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("7 10 2 9\n")
    ds = load_amazon_p5(tmp_path)
    assert ds.catalog.ids == ["2", "9", "10"]  # numeric order
    assert ds.sequences[0].tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        ("1 1 2 3\n2 2 x 3\n", DataFormatError, r"sequential_data.txt:2: ids must be integers, got 'x'"),
        (
            "1 1 2 3\n1 2 3 1\n",
            DataFormatError,
            r"sequential_data.txt:2: duplicate user id '1' \(first on line 1\)",
        ),
        ("1 1 2 3\n\n2 9 2 3\n", UnknownItemError, r"unknown item id '9' \(.*sequential_data.txt:3\)"),
        ("1 1 2 3\n2\n", DataFormatError, r"sequential_data.txt:2: expected 'user_id item_id"),
        ("\n\n", DataFormatError, r"sequential_data.txt: file is empty"),
    ],
)
def test_p5_bad_sequences(p5_dir, content, error, match):
    (p5_dir / "sequential_data.txt").write_text(content)
    with pytest.raises(error, match=match):
        load_amazon_p5(p5_dir)


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([{"item_id": 1}, {"item_id": 1}], DataFormatError, r"item_meta.jsonl.gz:2: duplicate item_id '1'"),
        ([{"title": "x"}], DataFormatError, r"item_meta.jsonl.gz:1: missing required field\(s\) item_id"),
        ([{"item_id": "B00X"}], DataFormatError, r"item_meta.jsonl.gz:1: item_id must be an integer"),
        ([{"item_id": 1}, {"item_id": 99}], UnknownItemError, r"'99' \(.*item_meta.jsonl.gz:2\)"),
        (
            [{"item_id": 1}, {"item_id": 2, "asin": "A3"}],
            DataFormatError,
            r"item_meta.jsonl.gz:2: asin 'A3' of item_id 2",
        ),
    ],
)
def test_p5_bad_metadata(p5_dir, rows, error, match):
    _gz(p5_dir / "item_meta.jsonl.gz", _jsonl(rows))
    with pytest.raises(error, match=match):
        load_amazon_p5(p5_dir)


def test_p5_bad_metadata_json(p5_dir):
    _gz(p5_dir / "item_meta.jsonl.gz", '{"item_id": 1}\n{"item_id": 2,\n')
    with pytest.raises(DataFormatError, match=r"item_meta.jsonl.gz:2: invalid JSON"):
        load_amazon_p5(p5_dir)


def test_p5_bad_datamaps(p5_dir):
    _gz(p5_dir / "datamaps.json.gz", json.dumps({"user2id": {}}))
    with pytest.raises(DataFormatError, match="missing required map 'id2item'"):
        load_amazon_p5(p5_dir)
    _gz(p5_dir / "datamaps.json.gz", '{"id2item": ')
    with pytest.raises(DataFormatError, match="datamaps.json.gz:1: invalid JSON"):
        load_amazon_p5(p5_dir)


def test_p5_missing_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sequential_data.txt"):
        load_amazon_p5(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load_amazon_p5(tmp_path / "nope")


@pytest.mark.shared_data
def test_beauty_real_counts(beauty_dir):
    ds = load_amazon_p5(beauty_dir)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (22_363, 12_101, 198_502)
    assert ds.catalog.ids[:3] == ["1", "2", "3"] and ds.catalog.ids[-1] == "12101"
    first = ds.catalog[0]
    assert first.title == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert first.fields["asin"] == "B004756YJA" and first.fields["brand"] == "OPI"
    assert not any("&amp;" in t or "&quot;" in t for t in ds.catalog.titles)
    assert sum(bool(t) for t in ds.catalog.titles) == 12_094
    assert min(len(s) for s in ds.sequences) == 5 and max(len(s) for s in ds.sequences) == 204


# -- raw review dumps ----------------------------------------------------------------------------

# 2014 reviews: u1 has a duplicate (i1 twice), u4 and item i9 fall out of the 2-core.
REVIEWS_2014 = [
    {"reviewerID": "u1", "asin": "i2", "unixReviewTime": 300, "overall": 4.0, "reviewText": "B &amp; B",
     "summary": "ok"},
    {"reviewerID": "u1", "asin": "i1", "unixReviewTime": 400, "overall": 5.0, "reviewText": "first",
     "summary": "great"},
    {"reviewerID": "u1", "asin": "i1", "unixReviewTime": 50, "overall": 1.0, "reviewText": "earlier dup",
     "summary": "dup"},
    {"reviewerID": "u1", "asin": "i3", "unixReviewTime": 300, "overall": 3.0, "reviewText": "tie",
     "summary": "t"},
    *({"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 3.0, "reviewText": "", "summary": "s"}
      for u, i, t in [("u2", "i3", 10), ("u2", "i1", 20), ("u2", "i2", 30), ("u3", "i2", 5), ("u3", "i3", 6),
                      ("u3", "i1", 7), ("u4", "i9", 7)]),
]  # fmt: skip

# 2014 metadata is Python-literal lines (single quotes), not JSON.
META_2014 = (
    "{'asin': 'i1', 'title': 'Guitar &amp; Strap', 'price': 9.5, 'categories': [['Music', 'Guitars']], "
    "'brand': 'Fender', 'salesRank': {'Music': 12}, 'description': 'A  guitar.'}\n"
    "{'asin': 'i2', 'title': 'Picks', 'related': {'also_bought': ['i1']}}\n"
    "{'asin': 'i7', 'title': 'Not reviewed'}\n"
)


def test_amazon_2014_kcore_sort_dedup(tmp_path):
    reviews = _gz(tmp_path / "reviews_Music_5.json.gz", _jsonl(REVIEWS_2014))
    meta = _gz(tmp_path / "meta_Music.json.gz", META_2014)
    ds = load_amazon_reviews(reviews, meta, k_core=2)
    assert ds.name == "amazon-music-5"
    assert ds.catalog.ids == ["i1", "i2", "i3"]  # i9 (and u4) removed by the 2-core
    assert ds.users == ["u1", "u2", "u3"]
    # u1: the earliest i1 (t=50, later in the file than t=400) is kept; i2 and i3 tie at t=300.
    assert [s.tolist() for s in ds.sequences] == [[0, 1, 2], [2, 0, 1], [1, 2, 0]]
    guitar = ds.catalog[0]
    assert guitar.title == "Guitar & Strap"
    assert guitar.fields == {"brand": "Fender", "categories": ["Music", "Guitars"], "price": 9.5,
                             "description": "A guitar.", "sales_type": "Music", "sales_rank": 12}  # fmt: skip
    assert ds.catalog[1].title == "Picks" and ds.catalog[2].title == ""


def test_k_core_is_iterative(tmp_path):
    # 3-core: removing user d (2 events) drops item z to 2 users, which then drops user c to 2 items.
    rows = [(u, i) for u, items in {"a": "xyw", "b": "xyw", "c": "xyz", "d": "zw"}.items() for i in items]
    rows += [("e", "x"), ("e", "y"), ("e", "w")]
    events = [{"reviewerID": u, "asin": i, "unixReviewTime": t} for t, (u, i) in enumerate(rows)]
    ds = load_amazon_reviews(_gz(tmp_path / "reviews.json.gz", _jsonl(events)), k_core=3)
    assert ds.users == ["a", "b", "e"]
    assert ds.catalog.ids == ["w", "x", "y"]


def test_amazon_2018_and_2023_formats(tmp_path):
    r2018 = [{"reviewerID": "u", "asin": f"i{k}", "unixReviewTime": 10 - k, "overall": 5.0, "vote": "2",
              "reviewText": "x", "summary": "y"} for k in range(3)]  # fmt: skip
    meta2018 = [{"asin": "i0", "title": "Zero", "description": ["Line one.", "Line two."], "brand": "B",
                 "category": ["Cat", "Sub"], "price": "$1,299.00", "feature": ["f1"]},
                {"asin": "i1", "title": "One", "price": "$5 - $10"}]  # fmt: skip
    ds = load_amazon_reviews(_gz(tmp_path / "r18.json.gz", _jsonl(r2018)),
                             _gz(tmp_path / "m18.json.gz", _jsonl(meta2018)), k_core=1)  # fmt: skip
    assert ds.sequences[0].tolist() == [2, 1, 0]  # sorted by time, not file order
    assert ds.catalog[0].fields == {"brand": "B", "categories": ["Cat", "Sub"], "price": 1299.0,
                                    "description": "Line one. Line two.", "features": ["f1"]}  # fmt: skip
    assert "price" not in ds.catalog[1].fields  # a price range is not a price

    r2023 = [{"user_id": "U", "parent_asin": f"P{k}", "asin": f"V{k}", "timestamp": 1_600_000_000_000 + k,
              "rating": 4.0, "title": "tip", "text": "body<br />"} for k in (2, 0, 1)]  # fmt: skip
    meta2023 = [{"parent_asin": "P0", "title": "Item zero", "store": "Shop", "categories": [],
                 "details": {"Color": "Red"}, "description": []}]  # fmt: skip
    path = tmp_path / "Beauty.jsonl"
    path.write_text(_jsonl(r2023))
    ds = load_amazon_reviews(path, _gz(tmp_path / "meta.jsonl.gz", _jsonl(meta2023)), k_core=0)
    assert ds.catalog.ids == ["P0", "P1", "P2"]
    assert ds.sequences[0].tolist() == [0, 1, 2]  # millisecond timestamps order the events
    assert ds.catalog[0].title == "Item zero"
    assert ds.catalog[0].fields == {"brand": "Shop", "details": {"Color": "Red"}}
    review = load_reviews(path)[0]
    assert (review.item, review.time, review.summary) == ("P2", pytest.approx(1_600_000_000.002), "tip")


def test_load_reviews_keeps_text(tmp_path):
    reviews = load_reviews(_gz(tmp_path / "reviews.json.gz", _jsonl(REVIEWS_2014)))
    assert len(reviews) == len(REVIEWS_2014)  # everything, in file order, no filtering
    assert (reviews[0].user, reviews[0].item, reviews[0].rating) == ("u1", "i2", 4.0)
    assert reviews[0].text == "B & B" and reviews[0].summary == "ok"


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (
            '{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}\n{"reviewerID": "u"\n',
            r"r.json:2: invalid JSON",
        ),
        ('{"reviewerID": "u", "asin": "i"}\n', r"r.json:1: missing required field\(s\) unixReviewTime"),
        (
            '{"reviewerID": "u", "asin": "i", "unixReviewTime": "soon"}\n',
            r"r.json:1: unixReviewTime must be a number",
        ),
        ('{"who": "u"}\n', r"r.json:1: cannot detect the review format"),
        ("[1, 2]\n", r"r.json:1: expected a JSON object"),
        ("", r"r.json: file is empty"),
    ],
)
def test_amazon_reviews_bad_input(tmp_path, lines, match):
    path = tmp_path / "r.json"
    path.write_text(lines)
    with pytest.raises(DataFormatError, match=match):
        load_amazon_reviews(path)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (
            "{'asin': 'a'}\n{'asin': 'b', 'title': open('x')}\n",
            r"m.json:2: neither JSON nor a Python literal",
        ),
        (
            "{'asin': 'a', 'title': 'A'}\n{'asin': 'b'}\n{'asin': 'a', 'title': 'B'}\n",
            r"m.json:3: conflicting duplicate item id 'a': record differs from line 1",
        ),
        ("{'title': 'no id'}\n", r"m.json:1: missing required field 'asin'"),
        ("['a']\n", r"m.json:1: expected an object"),
    ],
)
def test_amazon_meta_bad_input(tmp_path, lines, match):
    path = tmp_path / "m.json"
    path.write_text(lines)
    with pytest.raises(DataFormatError, match=match):
        read_amazon_meta(path)


def test_amazon_meta_exact_duplicates_kept_once_and_counted(tmp_path, caplog):
    # line 3 repeats line 1 verbatim; line 4 is the same record as line 2 written as JSON, keys reordered
    meta = (
        "{'asin': 'a', 'title': 'Alpha', 'price': 2.5}\n"
        "{'asin': 'b', 'title': 'Beta', 'categories': [['X', 'Y']]}\n"
        "{'asin': 'a', 'title': 'Alpha', 'price': 2.5}\n"
        '{"categories": [["X", "Y"]], "title": "Beta", "asin": "b"}\n'
    )
    path = _gz(tmp_path / "meta.json.gz", meta)
    with caplog.at_level(logging.INFO, logger="genrec.data.amazon"):
        out = read_amazon_meta(path)
    assert out == {"a": {"title": "Alpha", "price": 2.5}, "b": {"title": "Beta", "categories": ["X", "Y"]}}
    assert "skipped 2 exact duplicate metadata records" in caplog.text
    assert read_amazon_meta(path, keep={"b"}) == {"b": out["b"]}


def test_amazon_meta_conflicting_duplicate_names_both_lines(tmp_path):
    rows = [{"asin": "a", "title": "Alpha"}, {"asin": "c"}, {"asin": "a", "title": "Alpha"}]
    rows += [{"parent_asin": "a", "title": "Alpha v2"}]  # the 2023 key counts as the same id
    path = tmp_path / "meta.jsonl"
    path.write_text(_jsonl(rows))
    with pytest.raises(
        DataFormatError, match=r"meta.jsonl:4: .*item id 'a': record differs from line 1"
    ) as err:
        read_amazon_meta(path, keep={"c"})  # conflicts are errors even for ids that are not kept
    assert (err.value.path, err.value.line) == (str(path), 4)


def test_review_format_argument_is_checked(tmp_path):
    with pytest.raises(ValueError, match="format must be"):
        load_reviews(tmp_path / "x.json", format="2020")


@pytest.mark.shared_data
def test_musical_instruments_real(instruments_dir):
    path = instruments_dir / "reviews_Musical_Instruments_5.json.gz"
    ds = load_amazon_reviews(path)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (1_429, 900, 10_261)
    assert ds.catalog.titles == [""] * 900  # no metadata for this category
    reviews = load_reviews(path)
    assert len(reviews) == 10_261
    assert sum(bool(r.text) for r in reviews) == 10_254
    assert not any("&#34;" in r.text for r in reviews)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("folder", "counts"),
    [("amazon2014-sports", (35_598, 18_357, 296_337)), ("amazon2014-toys", (19_412, 11_924, 167_597))],
)
def test_sports_toys_real_counts(folder, counts):
    from genrec.utils import data_dir

    root = data_dir()
    if root is None or not (root / folder).is_dir():
        pytest.skip(f"shared dataset {folder!r} not found (set GENREC_DATA_DIR)")
    ds = load_amazon_p5(root / folder)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == counts
    assert not any(ds.catalog.titles)  # no metadata for these categories
    assert all(item.fields["asin"] for item in ds.catalog)
