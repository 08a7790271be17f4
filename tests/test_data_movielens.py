import gzip

import pytest
from PIL import Image

from genrec.data import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_posters,
    load_movielens_users,
    read_movies_dat,
)
from genrec.errors import DataFormatError, UnknownItemError

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
    "3::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
    "4::Never Rated (2000)::Drama\n"
)


def _write_latin1(path, text):
    path.write_bytes(text.encode("latin-1"))
    return path


# -- ML-1M ---------------------------------------------------------------------------------------


@pytest.fixture()
def ml1m_dir(tmp_path):
    _write_latin1(tmp_path / "movies.dat", MOVIES_DAT)
    ratings = "1::2::5::300\n1::1::3::100\n1::3::4::200\n2::3::1::10\n2::1::5::10\n2::2::2::5\n3::1::4::1\n"
    _write_latin1(tmp_path / "ratings.dat", ratings)
    _write_latin1(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return tmp_path


def test_ml1m_known_answer(ml1m_dir):
    ds = load_movielens_1m(ml1m_dir, k_core=0)
    assert ds.catalog.ids == ["1", "2", "3"]  # movie 4 has no ratings
    assert ds.users == ["1", "2"]  # user 3 has one rating
    # user 1 by time: 1 (100), 3 (200), 2 (300); user 2: 2 (5), then the tie at 10 keeps file order 3, 1
    assert [s.tolist() for s in ds.sequences] == [[0, 2, 1], [1, 2, 0]]
    assert ds.catalog[2].title == "Cité des enfants perdus, La (1995)"  # decoded as latin-1
    assert ds.catalog[2].fields == {"genres": ["Adventure", "Sci-Fi"], "year": 1995}


def test_ml1m_min_rating(ml1m_dir):
    ds = load_movielens_1m(ml1m_dir, k_core=0, min_rating=3)
    assert ds.users == ["1"]  # user 2 keeps only one rating >= 3


@pytest.mark.parametrize(
    ("ratings", "error", "match"),
    [
        (
            "1::1::5::1\n1::2::5\n",
            DataFormatError,
            r"ratings.dat:2: expected UserID, MovieID, Rating, Timestamp",
        ),
        ("1::x::5::1\n", DataFormatError, r"ratings.dat:1: item id must be an integer, got 'x'"),
        ("1::1::5::1\n1::99::5::2\n", UnknownItemError, r"'99' \(.*ratings.dat:2\)"),
        ("1::1::5::noon\n", DataFormatError, r"ratings.dat:1: timestamp must be a number"),
        ("", DataFormatError, r"ratings.dat: file is empty"),
    ],
)
def test_ml1m_bad_ratings(ml1m_dir, ratings, error, match):
    _write_latin1(ml1m_dir / "ratings.dat", ratings)
    with pytest.raises(error, match=match):
        load_movielens_1m(ml1m_dir)


@pytest.mark.parametrize(
    ("movies", "match"),
    [
        (
            "1::A (1990)::Drama\n1::B (1991)::Drama\n",
            r"movies.dat:2: duplicate movie id '1' \(first on line 1\)",
        ),
        ("1::A (1990)\n", r"movies.dat:1: expected MovieID::Title::Genres"),
        ("one::A (1990)::Drama\n", r"movies.dat:1: MovieID must be an integer"),
    ],
)
def test_movies_dat_bad_input(tmp_path, movies, match):
    with pytest.raises(DataFormatError, match=match):
        read_movies_dat(_write_latin1(tmp_path / "movies.dat", movies))


def test_users_dat_and_bad_users(ml1m_dir):
    users = load_movielens_users(ml1m_dir / "users.dat")
    assert users["2"] == {"gender": "M", "age": 56, "occupation": "16", "zip": "70072"}
    _write_latin1(ml1m_dir / "users.dat", "1::F::1::10::48067\n1::M::56::16::70072\n")
    with pytest.raises(DataFormatError, match=r"users.dat:2: duplicate user id '1'"):
        load_movielens_users(ml1m_dir / "users.dat")


# -- ML-100K: GroupLens files and RecBole atomic files ---------------------------------------------


def _u_item_line(movie_id, title, genre_index):
    flags = ["0"] * 19
    flags[genre_index] = "1"
    return "|".join([str(movie_id), title, "01-Jan-1995", "", "http://x"] + flags) + "\n"


@pytest.fixture()
def ml100k_grouplens(tmp_path):
    u_item = _u_item_line(1, "Toy Story (1995)", 3) + _u_item_line(2, "GoldenEye (1995)", 1)
    u_item += _u_item_line(3, "Four Rooms (1995)", 16)
    _write_latin1(tmp_path / "u.item", u_item)
    _write_latin1(tmp_path / "u.data", "7\t3\t4\t30\n7\t1\t5\t10\n7\t2\t3\t20\n8\t2\t1\t5\n")
    return tmp_path


def test_ml100k_grouplens_files(ml100k_grouplens):
    ds = load_movielens_100k(ml100k_grouplens)
    assert ds.users == ["7"] and ds.sequences[0].tolist() == [0, 1, 2]
    assert ds.catalog[0].title == "Toy Story (1995)"
    assert ds.catalog[0].fields == {"genres": ["Animation"], "year": 1995}
    assert ds.catalog[2].fields["genres"] == ["Thriller"]


def test_ml100k_grouplens_bad_input(ml100k_grouplens):
    _write_latin1(ml100k_grouplens / "u.data", "7\t3\t4\t30\n7\t9\t4\t31\n")
    with pytest.raises(UnknownItemError, match=r"'9' \(.*u.data:2\)"):
        load_movielens_100k(ml100k_grouplens)
    _write_latin1(ml100k_grouplens / "u.item", "1|Toy Story (1995)|x|y\n")
    with pytest.raises(DataFormatError, match=r"u.item:1: expected id\|title"):
        load_movielens_100k(ml100k_grouplens)


@pytest.fixture()
def ml100k_recbole(tmp_path):
    root = tmp_path / "movielens-100k"
    root.mkdir()
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "5\t2\t3\t881250949\n5\t1\t4\t881250900\n5\t3\t1\t881250999\n6\t1\t5\t1\n"
    with gzip.open(root / "ml-100k.inter.gz", "wt") as fh:
        fh.write(inter)
    items = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    items += "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction\n"
    items += "3\tunknown\tunkonwn\tunknown\n"
    (root / "ml-100k.item").write_text(items)
    posters = tmp_path / "movielens-1m-posters" / "posters"
    posters.mkdir(parents=True)
    Image.new("RGB", (4, 6)).save(posters / "10.jpg", format="JPEG")
    mapping = "ml100k_item_id\tml100k_title\tml100k_year\tml1m_movie_id\tml1m_title\tmatch_method\t"
    mapping += "poster_path_rel_to_movielens-1m-posters\n"
    mapping += "1\tToy Story\t1995\t1\tToy Story (1995)\ttitle+year\tposters/1.jpg\n"  # file missing
    mapping += "2\tGoldenEye\t1995\t10\tGoldenEye (1995)\ttitle+year\tposters/10.jpg\n"
    mapping += "3\tunknown\tunkonwn\t\t\t\t\n"
    (root / "ml100k_item_to_ml1m_poster.tsv").write_text(mapping)
    return root


def test_ml100k_recbole_atomic_with_posters(ml100k_recbole):
    ds = load_movielens_100k(ml100k_recbole)
    assert ds.users == ["5"] and ds.sequences[0].tolist() == [0, 1, 2]
    toy, golden, unknown = ds.catalog
    assert toy.title == "Toy Story (1995)" and toy.fields["genres"] == ["Animation", "Children's", "Comedy"]
    assert toy.image is None and toy.fields["ml1m_id"] == "1"  # mapped, but the poster file is absent
    assert golden.image == str((ml100k_recbole.parent / "movielens-1m-posters/posters/10.jpg").resolve())
    assert unknown.title == "unknown" and "year" not in unknown.fields


@pytest.mark.parametrize(
    ("inter", "match"),
    [
        ("user_id\titem_id\ttimestamp\n1\t1\t1\n", r"ml-100k.inter.gz:1: expected a RecBole header"),
        (
            "user_id:token\titem_id:token\n1\t1\n",
            r"ml-100k.inter.gz:1: header lacks required column\(s\) timestamp",
        ),
        (
            "user_id:token\titem_id:token\ttimestamp:float\n1\t1\n",
            r"ml-100k.inter.gz:2: expected 3 tab-separated",
        ),
    ],
)
def test_ml100k_recbole_bad_input(ml100k_recbole, inter, match):
    with gzip.open(ml100k_recbole / "ml-100k.inter.gz", "wt") as fh:
        fh.write(inter)
    with pytest.raises(DataFormatError, match=match):
        load_movielens_100k(ml100k_recbole)


def test_ml100k_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither u.data/u.item nor ml-100k.inter"):
        load_movielens_100k(tmp_path)


# -- ML-1M posters layout --------------------------------------------------------------------------


@pytest.fixture()
def posters_dir(tmp_path):
    _write_latin1(tmp_path / "movies.dat", MOVIES_DAT)
    (tmp_path / "sequences.txt").write_text("1 3 1 2\n2 2 3 1 3\n")
    (tmp_path / "posters").mkdir()
    Image.new("RGB", (5, 7), "red").save(tmp_path / "posters" / "1.jpg", format="JPEG")
    Image.new("RGB", (5, 7), "blue").save(
        tmp_path / "posters" / "3.jpg", format="PNG"
    )  # PNG bytes, .jpg name
    return tmp_path


def test_posters_layout(posters_dir):
    ds = load_movielens_posters(posters_dir)
    assert ds.catalog.ids == ["1", "2", "3"]  # movie 4 is in movies.dat but in no sequence
    assert [s.tolist() for s in ds.sequences] == [[2, 0, 1], [1, 2, 0, 2]]
    assert ds.catalog[0].image == str((posters_dir / "posters" / "1.jpg").resolve())
    assert ds.catalog[1].image is None
    assert Image.open(ds.catalog[2].image).format == "PNG"  # opened by content
    assert ds.catalog[0].fields == {"genres": ["Animation", "Children's", "Comedy"], "year": 1995}


@pytest.mark.parametrize(
    ("sequences", "error", "match"),
    [
        ("1 1 2 3\n2 1 2 99\n", UnknownItemError, r"'99' \(.*sequences.txt:2\)"),
        ("1 1 2 3\n1 1 2 3\n", DataFormatError, r"sequences.txt:2: duplicate user id '1'"),
        ("1 1 2 3.5\n", DataFormatError, r"sequences.txt:1: ids must be integers, got '3.5'"),
        ("", DataFormatError, r"sequences.txt: file is empty"),
    ],
)
def test_posters_bad_input(posters_dir, sequences, error, match):
    (posters_dir / "sequences.txt").write_text(sequences)
    with pytest.raises(error, match=match):
        load_movielens_posters(posters_dir)


@pytest.mark.shared_data
def test_ml1m_posters_real(ml1m_posters_dir):
    ds = load_movielens_posters(ml1m_posters_dir)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (6_040, 3_416, 999_611)
    assert sum(item.image is not None for item in ds.catalog) == 3_412
    toy = ds.catalog[ds.catalog.index_of("1")]
    assert toy.title == "Toy Story (1995)" and toy.fields == {"genres": ["Animation", "Children's", "Comedy"],
                                                               "year": 1995}  # fmt: skip
    with Image.open(toy.image) as poster:
        assert poster.format == "JPEG" and poster.size[0] == 185


@pytest.mark.shared_data
def test_ml100k_real(ml100k_dir):
    ds = load_movielens_100k(ml100k_dir)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (943, 1_682, 100_000)
    if (ml100k_dir.parent / "movielens-1m-posters").is_dir():
        assert sum(item.image is not None for item in ds.catalog) == 1_642
    assert len(load_movielens_users(ml100k_dir / "ml-100k.user")) == 943
