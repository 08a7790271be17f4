"""MovieLens: ML-1M (``::`` files), ML-100K (``u.data``/``u.item`` or RecBole atomic files) and the
ML-1M posters layout used for personalised thumbnails.

All GroupLens files are ISO-8859-1. Titles keep the GroupLens form ``"Toy Story (1995)"``; the year
and the genre list also go to ``fields["year"]`` and ``fields["genres"]``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.data.interactions import Event, events_to_dataset, rows_to_dataset
from genrec.data.readers import (
    find_file,
    iter_atomic,
    iter_lines,
    open_text,
    parse_float,
    parse_int,
    read_sequence_file,
    require_folder,
)
from genrec.data.text import clean_text
from genrec.errors import DataFormatError, UnknownItemError

LATIN1 = "latin-1"
_YEAR = re.compile(r"\((\d{4})\)\s*$")

# ML-100K genre flag order (the content of ``u.genre``), used when that file is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip


def _split(line: str, sep: str, n: int, path: Path, number: int, what: str) -> list[str]:
    parts = line.split(sep)
    if len(parts) < n:
        raise DataFormatError(
            f"expected {what} ({n} {sep!r}-separated fields), got {len(parts)}", path, number
        )
    return parts


def _add_item(items: dict[str, Item], first: dict[str, int], item: Item, path: Path, number: int) -> None:
    if item.id in first:
        raise DataFormatError(
            f"duplicate movie id {item.id!r} (first on line {first[item.id]})", path, number
        )
    first[item.id] = number
    items[item.id] = item


def _movie(movie_id: str, title: str, genres: list[str], year: int | None = None) -> Item:
    title = clean_text(title)
    if year is None:
        match = _YEAR.search(title)
        year = int(match.group(1)) if match else None
    fields: dict[str, Any] = {"genres": genres}
    if year is not None:
        fields["year"] = year
    return Item(movie_id, title, fields)


def read_movies_dat(path: str | Path) -> dict[str, Item]:
    """ML-1M ``movies.dat``: ``MovieID::Title (Year)::Genre|Genre``; returns items keyed by MovieID."""
    path = Path(path)
    items: dict[str, Item] = {}
    first: dict[str, int] = {}
    for number, line in iter_lines(path, LATIN1):
        movie_id, title, genres = _split(line, "::", 3, path, number, "MovieID::Title::Genres")[:3]
        movie_id = str(parse_int(movie_id, "MovieID", path, number))
        _add_item(items, first, _movie(movie_id, title, [g for g in genres.split("|") if g]), path, number)
    return items


def _catalog_for(items: dict[str, Item], used: set[str], source: Path) -> Catalog:
    """Only the movies that occur in the interactions, in MovieID order."""
    return Catalog((items[i] for i in sorted(used, key=int)), source=str(source))


def _read_ratings(path: Path, sep: str, known: dict[str, Item], min_rating: float | None) -> list[Event]:
    events: list[Event] = []
    for number, line in iter_lines(path, LATIN1):
        user, item, rating, ts = _split(line, sep, 4, path, number, "UserID, MovieID, Rating, Timestamp")[:4]
        user = str(parse_int(user, "user id", path, number))
        item = str(parse_int(item, "item id", path, number))
        if item not in known:
            raise UnknownItemError(item, f"{path}:{number}")
        if min_rating is not None and parse_float(rating, "rating", path, number) < min_rating:
            continue
        events.append((user, item, parse_float(ts, "timestamp", path, number)))
    return events


def load_movielens_1m(
    folder: str | Path, k_core: int = 5, min_rating: float | None = None, name: str = "ml-1m"
) -> SequenceDataset:
    """ML-1M from ``ratings.dat`` + ``movies.dat``: every rating is an interaction (optionally only those
    ``>= min_rating``), sorted by time, ``k_core``-filtered (5 drops the rarely rated movies, as LRURec/
    LlamaRec preprocessing does)."""
    folder = require_folder(folder)
    ratings = folder / "ratings.dat"
    if not ratings.is_file():
        raise FileNotFoundError(f"{folder}: no ratings.dat (ML-1M format)")
    movies = read_movies_dat(folder / "movies.dat")
    events = _read_ratings(ratings, "::", movies, min_rating)
    catalog = _catalog_for(movies, {e[1] for e in events}, folder / "movies.dat")
    return events_to_dataset(name, events, catalog, k=k_core, source=str(ratings))


def load_movielens_100k(
    folder: str | Path,
    k_core: int = 0,
    min_rating: float | None = None,
    poster_dir: str | Path | None = None,
    name: str = "ml-100k",
) -> SequenceDataset:
    """ML-100K from the GroupLens files (``u.data``, ``u.item``) or RecBole atomic files
    (``ml-100k.inter[.gz]``, ``ml-100k.item``). ``k_core=0`` keeps all 943 users and 1,682 movies.

    When ``ml100k_item_to_ml1m_poster.tsv`` is present, ``Item.image`` points to the ML-1M poster
    (``poster_dir`` defaults to the sibling ``movielens-1m-posters`` folder).
    """
    folder = require_folder(folder)
    if (folder / "u.data").is_file():
        movies = _read_u_item(folder / "u.item", folder / "u.genre")
        ratings = folder / "u.data"
        events = _read_ratings(ratings, "\t", movies, min_rating)
    else:
        ratings = find_file(folder, "ml-100k.inter")  # type: ignore[assignment]
        item_path = find_file(folder, "ml-100k.item")
        if ratings is None or item_path is None:
            raise FileNotFoundError(f"{folder}: neither u.data/u.item nor ml-100k.inter/ml-100k.item found")
        movies = _read_atomic_items(item_path)
        events = _read_atomic_inter(ratings, movies, min_rating)
    poster_map = folder / "ml100k_item_to_ml1m_poster.tsv"
    if poster_map.is_file():
        root = Path(poster_dir) if poster_dir else folder.parent / "movielens-1m-posters"
        _attach_posters(movies, poster_map, root)
    catalog = _catalog_for(movies, {e[1] for e in events}, ratings)
    return events_to_dataset(name, events, catalog, k=k_core, source=str(ratings))


def _read_u_item(path: Path, genre_path: Path) -> dict[str, Item]:
    """``u.item``: ``id|title|release date|video release date|IMDb URL|19 genre flags``."""
    genres = ML100K_GENRES
    if genre_path.is_file():
        genres = tuple(line.split("|")[0] for _, line in iter_lines(genre_path, LATIN1))
    items: dict[str, Item] = {}
    first: dict[str, int] = {}
    for number, line in iter_lines(path, LATIN1):
        parts = _split(line, "|", 5 + len(genres), path, number, "id|title|date|video date|url|genre flags")
        movie_id = str(parse_int(parts[0], "movie id", path, number))
        flags = parts[5 : 5 + len(genres)]
        if any(f not in ("0", "1") for f in flags):
            raise DataFormatError("genre flags must be 0 or 1", path, number)
        item = _movie(movie_id, parts[1], [g for g, f in zip(genres, flags) if f == "1"])
        _add_item(items, first, item, path, number)
    return items


def _read_atomic_items(path: Path) -> dict[str, Item]:
    """RecBole ``ml-100k.item``: ``item_id, movie_title, release_year, class`` (genres space-separated)."""
    items: dict[str, Item] = {}
    first: dict[str, int] = {}
    for number, row in iter_atomic(path, required=("item_id", "movie_title")):
        movie_id = str(parse_int(row["item_id"], "item_id", path, number))
        year_text = row.get("release_year", "")
        year = int(year_text) if year_text.isdigit() else None
        title = clean_text(row["movie_title"])
        item = _movie(movie_id, f"{title} ({year})" if year else title, row.get("class", "").split(), year)
        _add_item(items, first, item, path, number)
    return items


def _read_atomic_inter(path: Path, known: dict[str, Item], min_rating: float | None) -> list[Event]:
    events: list[Event] = []
    for number, row in iter_atomic(path, required=("user_id", "item_id", "timestamp")):
        user = str(parse_int(row["user_id"], "user_id", path, number))
        item = str(parse_int(row["item_id"], "item_id", path, number))
        if item not in known:
            raise UnknownItemError(item, f"{path}:{number}")
        if min_rating is not None and parse_float(row.get("rating"), "rating", path, number) < min_rating:
            continue
        events.append((user, item, parse_float(row["timestamp"], "timestamp", path, number)))
    return events


def _attach_posters(movies: dict[str, Item], mapping: Path, poster_root: Path) -> None:
    with open_text(mapping) as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        column = "poster_path_rel_to_movielens-1m-posters"
        if (
            reader.fieldnames is None
            or "ml100k_item_id" not in reader.fieldnames
            or column not in reader.fieldnames
        ):
            raise DataFormatError(f"expected columns ml100k_item_id and {column}", mapping, 1)
        for row in reader:
            item = movies.get(row["ml100k_item_id"])
            if item is None or not row[column]:
                continue
            if row.get("ml1m_movie_id"):
                item.fields["ml1m_id"] = row["ml1m_movie_id"]
            poster = (poster_root / row[column]).resolve()
            if poster.is_file():
                item.image = str(poster)


def load_movielens_posters(folder: str | Path, name: str | None = None) -> SequenceDataset:
    """The ML-1M posters layout: ``sequences.txt`` (``UserID MovieID ...``, chronological),
    ``movies.dat`` and ``posters/<MovieID>.jpg``. ``Item.image`` is the absolute poster path when the
    file exists (``3575.jpg`` is really a PNG: open images by content). The catalog holds the movies
    that occur in the sequences, in MovieID order.
    """
    folder = require_folder(folder)
    seq_path = folder / "sequences.txt"
    if not seq_path.is_file():
        raise FileNotFoundError(f"{folder}: no sequences.txt (ML-1M posters layout)")
    movies = read_movies_dat(folder / "movies.dat")
    rows = read_sequence_file(seq_path)
    used: set[str] = set()
    for number, _, items in rows:
        for item in items:
            if item not in movies:
                raise UnknownItemError(item, f"{seq_path}:{number}")
            used.add(item)
    posters = (folder / "posters").resolve()
    for movie_id in used:
        poster = posters / f"{movie_id}.jpg"
        if poster.is_file():
            movies[movie_id].image = str(poster)
    catalog = _catalog_for(movies, used, folder / "movies.dat")
    return rows_to_dataset(name or folder.name, catalog, rows, seq_path)


def load_movielens_users(path: str | Path) -> dict[str, dict[str, Any]]:
    """User demographics keyed by user id (for user-conditioned models).

    Reads ML-1M ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``), ML-100K ``u.user``
    (``id|age|gender|occupation|zip``) or the RecBole ``ml-100k.user`` atomic file.
    """
    path = Path(path)
    users: dict[str, dict[str, Any]] = {}
    first: dict[str, int] = {}

    def add(number: int, user: str, gender: str, age: str, occupation: str, zip_code: str) -> None:
        user = str(parse_int(user, "user id", path, number))
        if user in first:
            raise DataFormatError(f"duplicate user id {user!r} (first on line {first[user]})", path, number)
        first[user] = number
        users[user] = {"gender": gender, "age": parse_int(age, "age", path, number),
                       "occupation": occupation, "zip": zip_code}  # fmt: skip

    with open_text(path, LATIN1) as fh:
        header = fh.readline()
    if ":token" in header:
        for number, row in iter_atomic(path, required=("user_id", "age", "gender", "occupation")):
            add(number, row["user_id"], row["gender"], row["age"], row["occupation"], row.get("zip_code", ""))
    elif "::" in header:
        for number, line in iter_lines(path, LATIN1):
            u, g, a, o, z = _split(line, "::", 5, path, number, "UserID::Gender::Age::Occupation::Zip-code")[
                :5
            ]
            add(number, u, g, a, o, z)
    else:
        for number, line in iter_lines(path, LATIN1):
            u, a, g, o, z = _split(line, "|", 5, path, number, "id|age|gender|occupation|zip")[:5]
            add(number, u, g, a, o, z)
    return users
