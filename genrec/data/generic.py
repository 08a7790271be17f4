"""Bring-your-own data: an interactions table (CSV/TSV or JSON Lines) plus an optional items JSONL.

Interactions need ``user``, ``item`` and ``timestamp`` columns (names configurable); timestamps may be
numbers or ISO-8601 strings. Items need ``id``; ``title`` and ``image`` are optional and every other key
goes to ``Item.fields``. Relative image paths are resolved against the items file's folder.

JSON ``null`` means missing, never the text ``"None"``: a null required value (interaction columns, item
``id``) raises :class:`DataFormatError` naming file, line and field; a null optional item key is left out
of ``Item.fields`` (and null list elements are dropped), so templates see it as absent.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.data.interactions import Event, events_to_dataset
from genrec.data.readers import iter_json_lines, open_text
from genrec.data.text import clean_text
from genrec.errors import DataFormatError, UnknownItemError
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


def load_generic(
    interactions_path: str | Path,
    items_path: str | Path | None = None,
    k_core: int = 0,
    name: str | None = None,
    user_column: str = "user",
    item_column: str = "item",
    time_column: str = "timestamp",
) -> SequenceDataset:
    """Load interactions (+ items), de-duplicate, optionally k-core filter, sort by time.

    Without ``items_path`` the catalog is the set of item ids seen, with empty titles. With it, an
    interaction whose item is not in the items file raises :class:`UnknownItemError` naming file:line.
    """
    interactions_path = Path(interactions_path)
    columns = (user_column, item_column, time_column)
    events: list[Event] = []
    items = read_items_jsonl(items_path) if items_path else None
    for number, row in _iter_table(interactions_path, columns):
        user, item, raw_time = (str(row[c]).strip() for c in columns)
        for column, value in zip(columns, (user, item, raw_time)):
            if not value:
                raise DataFormatError(f"empty value in column {column!r}", interactions_path, number)
        if items is not None and item not in items:
            raise UnknownItemError(item, f"{interactions_path}:{number}")
        events.append((user, item, _parse_time(raw_time, time_column, interactions_path, number)))
    if not events:
        raise DataFormatError("no interactions (only a header)", interactions_path)
    if items is None:
        items = {i: Item(i) for i in sorted({e[1] for e in events})}
    catalog = Catalog(items.values(), source=str(items_path or interactions_path))
    return events_to_dataset(
        name or _stem(interactions_path), events, catalog, k=k_core, source=str(interactions_path)
    )


def read_items_jsonl(path: str | Path) -> dict[str, Item]:
    """Items keyed by id, in file order. ``id`` is required and unique; strings are HTML-unescaped.

    A null value counts as absent (see the module docstring): it never reaches a template as "None".
    """
    path = Path(path)
    items: dict[str, Item] = {}
    first: dict[str, int] = {}
    missing_images = 0
    for number, record in iter_json_lines(path):
        if record.get("id") in (None, ""):
            raise DataFormatError("missing required field 'id'", path, number)
        item_id = str(record["id"])
        if item_id in first:
            raise DataFormatError(
                f"duplicate item id {item_id!r} (first on line {first[item_id]})", path, number
            )
        first[item_id] = number
        fields = {
            k: _field_value(v)
            for k, v in record.items()
            if k not in ("id", "title", "image") and v is not None
        }
        image = record.get("image")
        if image and "://" not in str(image):
            resolved = (path.parent / str(image)).resolve()
            if resolved.is_file():
                image = str(resolved)
            else:
                missing_images += 1
                image = None
        items[item_id] = Item(item_id, clean_text(record.get("title")), fields, image or None)
    if missing_images:
        logger.warning("%s: %d image paths do not exist; those items have no image", path, missing_images)
    return items


def write_items_jsonl(items: Iterable[Item], path: str | Path) -> Path:
    """Inverse of :func:`read_items_jsonl`: one JSON object per item (id, title, fields, image)."""
    from genrec.utils.io import atomic_write

    path = Path(path)
    with atomic_write(path) as fh:
        for item in items:
            record = {"id": item.id, "title": item.title, **item.fields}
            if item.image:
                record["image"] = item.image
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return path


def _field_value(value: Any) -> Any:
    """Strings HTML-unescaped; nulls inside lists dropped, since templates would print them as "None"."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return value


def _iter_table(path: Path, columns: tuple[str, ...]):
    """Rows of a CSV/TSV (header required) or JSON Lines file as ``(line_number, dict)``."""
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1].lower() if suffixes else ""
    if kind in (".jsonl", ".json", ".ndjson"):
        for number, record in iter_json_lines(path):
            missing = [c for c in columns if c not in record]
            if missing:
                raise DataFormatError(f"missing required field(s) {', '.join(missing)}", path, number)
            null = [c for c in columns if record[c] is None]
            if null:  # str(None) would make a user, item or time called "None"
                raise DataFormatError(f"required field(s) {', '.join(null)} are null", path, number)
            yield number, record
        return
    if kind not in (".csv", ".tsv"):
        raise DataFormatError("unknown interactions format: use .csv, .tsv or .jsonl (optionally .gz)", path)
    with open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter="\t" if kind == ".tsv" else ",")
        if not reader.fieldnames:
            raise DataFormatError("file is empty", path)
        header = [f.strip() for f in reader.fieldnames]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataFormatError(
                f"header lacks required column(s) {', '.join(missing)} (found: {', '.join(header)})", path, 1
            )
        reader.fieldnames = header
        for row in reader:
            if None in row or any(row[c] is None for c in columns):
                raise DataFormatError(f"expected {len(header)} columns", path, reader.line_num)
            yield reader.line_num, row


def _parse_time(value: str, column: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise DataFormatError(
            f"{column} must be a number or ISO-8601 date, got {value!r}", path, line
        ) from None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return name
