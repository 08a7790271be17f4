"""Amazon review data: the P5/TIGER processed splits and the raw 2014 / 2018 / 2023 dumps.

* :func:`load_amazon_p5` reads the folder layout used by P5, TIGER, LC-Rec and LETTER
  (``sequential_data.txt`` + ``datamaps.json[.gz]`` + optional ``item_meta.jsonl[.gz]``), so results
  are comparable with the published numbers (Beauty: 22,363 users, 12,101 items, 198,502 interactions).
* :func:`load_amazon_reviews` builds a dataset from a raw review dump: de-duplicated, k-core
  filtered and sorted by time. :func:`load_reviews` keeps the review text and summary per
  ``(user, item)`` for explanation tasks.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.data.interactions import Event, events_to_dataset, rows_to_dataset
from genrec.data.readers import (
    find_file,
    iter_json_lines,
    iter_lines,
    open_text,
    parse_float,
    read_sequence_file,
    require_folder,
    require_keys,
)
from genrec.data.text import clean_text
from genrec.errors import DataFormatError, UnknownItemError
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

# ------------------------------------------------------------------------------------------------
# P5 / TIGER processed folders
# ------------------------------------------------------------------------------------------------

# Item-metadata columns copied into Item.fields (besides the title); empty values are left out.
_P5_META_FIELDS = ("brand", "categories", "price", "sales_type", "sales_rank", "description")


def load_amazon_p5(folder: str | Path, name: str | None = None) -> SequenceDataset:
    """Load a P5-format folder. Item ids are the P5 integer ids as strings; the ASIN is in ``fields``.

    Items come from ``datamaps`` (``id2item``, else the inverse of ``item2id``) in id order, or from
    the sequences when there is no datamaps file. Titles come from ``item_meta.jsonl[.gz]`` when present
    (HTML-unescaped); Sports/Toys have none and get empty titles.
    """
    folder = require_folder(folder)
    seq_path = find_file(folder, "sequential_data.txt", "sequential.txt")
    if seq_path is None:
        raise FileNotFoundError(f"{folder}: no sequential_data.txt (P5 format) found")
    rows = read_sequence_file(seq_path)

    maps_path = find_file(folder, "datamaps.json")
    id2asin = _read_datamaps(maps_path) if maps_path else {}
    if id2asin:
        item_ids = sorted(id2asin, key=int)
    else:
        item_ids = sorted({i for _, _, items in rows for i in items}, key=int)

    meta_path = find_file(folder, "item_meta.jsonl")
    meta = _read_p5_meta(meta_path, set(item_ids)) if meta_path else {}
    items = []
    for item_id in item_ids:
        line, record = meta.get(item_id, (0, {}))
        fields: dict[str, Any] = {}
        asin = id2asin.get(item_id) or record.get("asin")
        if record.get("asin") and asin != record["asin"]:  # e.g. metadata keyed by another id scheme
            raise DataFormatError(
                f"asin {record['asin']!r} of item_id {item_id} disagrees with datamaps ({asin!r})",
                meta_path,
                line,
            )
        if asin:
            fields["asin"] = asin
        fields.update(_clean_fields({k: record.get(k) for k in _P5_META_FIELDS}))
        items.append(Item(item_id, clean_text(record.get("title")), fields))
    catalog = Catalog(items, source=str(maps_path or seq_path))
    return rows_to_dataset(name or folder.name, catalog, rows, seq_path)


def _read_datamaps(path: Path) -> dict[str, str]:
    """P5 ``datamaps.json``: returns P5 item id -> ASIN."""
    try:
        with open_text(path) as fh:
            maps = json.load(fh)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"invalid JSON ({err.msg})", path, err.lineno) from None
    if not isinstance(maps, dict):
        raise DataFormatError("expected a JSON object with 'id2item' or 'item2id'", path)
    if isinstance(maps.get("id2item"), dict):
        id2asin = {str(k): str(v) for k, v in maps["id2item"].items()}
    elif isinstance(maps.get("item2id"), dict):
        id2asin = {}
        for asin, item_id in maps["item2id"].items():
            if str(item_id) in id2asin:
                raise DataFormatError(f"item2id: duplicate item id {item_id!r}", path)
            id2asin[str(item_id)] = str(asin)
    else:
        raise DataFormatError("missing required map 'id2item' (or 'item2id')", path)
    bad = next((k for k in id2asin if not k.isdigit()), None)
    if bad is not None:
        raise DataFormatError(f"item ids must be integers, got {bad!r}", path)
    return {str(int(k)): v for k, v in id2asin.items()}


def _read_p5_meta(path: Path, known: set[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """``item_meta.jsonl``: P5 item id -> (line number, record)."""
    meta: dict[str, tuple[int, dict[str, Any]]] = {}
    first_line: dict[str, int] = {}
    for number, record in iter_json_lines(path):
        require_keys(record, ("item_id",), path, number)
        raw = record["item_id"]
        if isinstance(raw, bool) or not str(raw).strip().isdigit():
            raise DataFormatError(f"item_id must be an integer, got {raw!r}", path, number)
        item_id = str(int(raw))
        if item_id in first_line:
            raise DataFormatError(
                f"duplicate item_id {item_id!r} (first on line {first_line[item_id]})", path, number
            )
        if known and item_id not in known:
            raise UnknownItemError(item_id, f"{path}:{number}")
        first_line[item_id] = number
        meta[item_id] = (number, record)
    return meta


def _clean_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values, unescape strings (and lists of strings) so templates get clean text."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            value = clean_text(value)
        elif isinstance(value, list):
            value = [clean_text(v) for v in value if isinstance(v, str) and clean_text(v)]
        if value is None or value == "" or value == [] or value == {}:
            continue
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------
# Raw review dumps (2014 / 2018 / 2023)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """One review: who, what, when (Unix seconds), the rating, and the cleaned text and summary."""

    user: str
    item: str
    time: float
    rating: float | None
    text: str
    summary: str


@dataclass(frozen=True)
class _ReviewSchema:
    user: str
    item: str
    time: str
    rating: str
    text: str
    summary: str
    seconds_per_unit: float


_REVIEW_SCHEMAS = {
    "2014": _ReviewSchema("reviewerID", "asin", "unixReviewTime", "overall", "reviewText", "summary", 1.0),
    "2018": _ReviewSchema("reviewerID", "asin", "unixReviewTime", "overall", "reviewText", "summary", 1.0),
    # 2023: parent_asin groups colour/size variants, as in the official benchmark splits; ms timestamps.
    "2023": _ReviewSchema("user_id", "parent_asin", "timestamp", "rating", "text", "title", 1e-3),
}


def _detect_review_format(record: dict[str, Any], path: Path, line: int) -> str:
    if "reviewerID" in record:
        return "2014"  # 2018 reviews share the 2014 schema
    if "user_id" in record:
        return "2023"
    raise DataFormatError(
        "cannot detect the review format: expected 'reviewerID' (2014/2018) or 'user_id' (2023)", path, line
    )


def _iter_records(path: Path, format: str) -> Iterator[tuple[int, dict[str, Any], _ReviewSchema, Event]]:
    """Validated records with their ``(user, item, time)`` event; text is left to the caller (it is slow)."""
    if format not in ("auto", *_REVIEW_SCHEMAS):
        raise ValueError(f"format must be 'auto' or one of {sorted(_REVIEW_SCHEMAS)}, got {format!r}")
    schema: _ReviewSchema | None = None if format == "auto" else _REVIEW_SCHEMAS[format]
    for number, record in iter_json_lines(path):
        if schema is None:
            schema = _REVIEW_SCHEMAS[_detect_review_format(record, path, number)]
        item_key = schema.item if schema.item in record else "asin"  # some 2023 files lack parent_asin
        require_keys(record, (schema.user, item_key, schema.time), path, number)
        t = parse_float(record[schema.time], schema.time, path, number) * schema.seconds_per_unit
        yield number, record, schema, (str(record[schema.user]), str(record[item_key]), t)


def iter_reviews(path: str | Path, format: str = "auto") -> Iterator[tuple[int, Review]]:
    """Yield ``(line_number, Review)`` from a 2014/2018/2023 review file (JSON lines, gzip or not)."""
    path = Path(path)
    for number, record, schema, (user, item, t) in _iter_records(path, format):
        rating = record.get(schema.rating)
        if rating is not None:
            rating = parse_float(rating, schema.rating, path, number)
        text, summary = clean_text(record.get(schema.text)), clean_text(record.get(schema.summary))
        yield number, Review(user, item, t, rating, text, summary)


def load_reviews(path: str | Path, format: str = "auto") -> list[Review]:
    """All reviews of a raw dump in file order, text HTML-unescaped (explanation / review tasks)."""
    return [review for _, review in iter_reviews(path, format)]


def load_amazon_reviews(
    reviews_path: str | Path,
    meta_path: str | Path | None = None,
    k_core: int = 5,
    format: str = "auto",
    name: str | None = None,
) -> SequenceDataset:
    """A dataset from a raw review dump: de-duplicated, iteratively ``k_core``-filtered, sorted by time.

    Item ids are ASINs (``parent_asin`` for 2023). With ``meta_path`` titles, brand, categories, price
    and description are read for the surviving items; items missing from it keep an empty title.
    """
    reviews_path = Path(reviews_path)
    events = [event for *_, event in _iter_records(reviews_path, format)]
    item_ids = sorted({e[1] for e in events})
    meta = read_amazon_meta(meta_path, set(item_ids)) if meta_path else {}
    items = []
    for item_id in item_ids:
        fields = dict(meta.get(item_id, {}))
        items.append(Item(item_id, fields.pop("title", ""), fields))
    catalog = Catalog(items, source=str(meta_path or reviews_path))
    if meta_path:
        logger.info("%s: metadata for %d of %d items", meta_path, len(meta), len(item_ids))
    return events_to_dataset(
        name or _dataset_name(reviews_path), events, catalog, k=k_core, source=str(reviews_path)
    )


def _dataset_name(path: Path) -> str:
    stem = re.sub(r"\.(json|jsonl)(\.gz)?$", "", path.name)
    return "amazon-" + re.sub(r"^reviews_", "", stem).lower().replace("_", "-")


def read_amazon_meta(path: str | Path, keep: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Item metadata keyed by ASIN (``parent_asin`` for 2023), normalised to ``title`` + Item fields.

    2014 files hold Python literals (single quotes) and are parsed with ``ast.literal_eval``, never
    ``eval``; 2018/2023 files are JSON. Only ids in ``keep`` are retained (metadata dumps are large).

    Raw dumps repeat some records verbatim: the first copy is kept and the rest are counted and logged.
    A repeated id whose record differs raises :class:`DataFormatError` naming both lines.
    """
    path = Path(path)
    out: dict[str, dict[str, Any]] = {}
    first: dict[str, tuple[int, int]] = {}  # id -> (line number, hash of the line's text)
    duplicates = 0
    differing_text: list[tuple[str, int, int]] = []  # (id, first line, later line): same content?
    for number, line in iter_lines(path):
        record = _parse_meta_line(line, path, number)
        item_id = record.get("parent_asin") or record.get("asin")
        if not item_id:
            raise DataFormatError("missing required field 'asin' (or 'parent_asin')", path, number)
        item_id = str(item_id)
        line_hash = hash(line)  # a hash, not the record: memory stays small on multi-GB dumps
        if item_id in first:
            duplicates += 1
            first_number, first_hash = first[item_id]
            if line_hash != first_hash:
                differing_text.append((item_id, first_number, number))
            continue
        first[item_id] = (number, line_hash)
        if keep is None or item_id in keep:
            out[item_id] = _normalise_meta(record)
    if differing_text:
        _check_duplicates_match(path, differing_text)
    if duplicates:
        logger.info(
            "%s: skipped %d exact duplicate metadata records (the first of each is kept)", path, duplicates
        )
    return out


def _check_duplicates_match(path: Path, pairs: list[tuple[str, int, int]]) -> None:
    """Re-read only the lines whose text differs: equal records formatted differently are exact duplicates.

    A second pass over the few suspect lines is cheaper than canonicalising every record of a large dump.
    """
    wanted = {n for _, first, later in pairs for n in (first, later)}
    records: dict[int, dict[str, Any]] = {}
    for number, line in iter_lines(path):
        if number in wanted:
            records[number] = _parse_meta_line(line, path, number)
            if len(records) == len(wanted):
                break
    for item_id, first, later in pairs:
        if records[first] != records[later]:
            raise DataFormatError(
                f"conflicting duplicate item id {item_id!r}: record differs from line {first}", path, later
            )


def _parse_meta_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataFormatError("neither JSON nor a Python literal", path, number) from None
    if not isinstance(record, dict):
        raise DataFormatError(f"expected an object, got {type(record).__name__}", path, number)
    return record


def _normalise_meta(record: dict[str, Any]) -> dict[str, Any]:
    """Map the three metadata schemas onto one set of keys."""
    categories = record.get("categories") or record.get("category") or []
    if categories and isinstance(categories[0], list):  # 2014: a list of category paths; keep the first
        categories = categories[0]
    description = record.get("description")
    if isinstance(description, list):
        description = " ".join(str(d) for d in description)
    features = record.get("features") or record.get("feature") or []
    sales_rank = record.get("salesRank")
    sales_type, rank = (
        next(iter(sales_rank.items())) if isinstance(sales_rank, dict) and sales_rank else (None, None)
    )
    fields = _clean_fields(
        {
            "title": record.get("title"),
            "brand": record.get("brand") or record.get("store"),
            "categories": list(categories) if isinstance(categories, list) else [categories],
            "price": _parse_price(record.get("price")),
            "description": description,
            "features": list(features) if isinstance(features, list) else [features],
            "sales_type": sales_type,
            "sales_rank": rank,
            "image_url": record.get("imUrl"),
        }
    )
    if isinstance(record.get("details"), dict) and record["details"]:
        fields["details"] = {str(k): clean_text(v) for k, v in record["details"].items()}
    fields.setdefault("title", "")
    return fields


_PRICE = re.compile(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)$")


def _parse_price(value: object) -> float | None:
    """Prices are floats (2014), ``"$12.99"`` strings (2018/2023), ranges or junk; keep plain amounts only."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = _PRICE.match(value.strip())
        if match:
            return float(match.group(1).replace(",", ""))
    return None
