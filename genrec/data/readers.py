"""Line readers for the loaders: gzip by content, 1-based line numbers, errors naming file and line."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from genrec.errors import DataFormatError

_GZIP_MAGIC = b"\x1f\x8b"


def open_text(path: str | Path, encoding: str = "utf-8") -> IO[str]:
    """Open a text file, transparently gunzipping it when its first bytes say gzip (whatever its suffix)."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, newline="")


def open_binary(path: str | Path) -> IO[bytes]:
    """Open for reading bytes, gunzipping when the content is gzip."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def iter_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for non-blank lines, without the newline; an empty file is an error.

    Lines are decoded one at a time so that a bad byte is reported with its own line number.
    """
    seen = False
    number = 0
    with open_binary(path) as fh:
        try:
            for number, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise DataFormatError(f"not valid {encoding} ({err.reason})", path, number) from None
                if line.strip():
                    seen = True
                    yield number, line
        except (OSError, EOFError) as err:  # truncated or corrupt gzip; decompression is buffered
            raise DataFormatError(f"corrupt or truncated after {number} lines ({err})", path) from err
    if not seen:
        raise DataFormatError("file is empty", path)


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for a JSON Lines file; every line must be a JSON object."""
    for number, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"invalid JSON ({err.msg})", path, number) from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"expected a JSON object, got {type(obj).__name__}", path, number)
        yield number, obj


def parse_int(token: str, what: str, path: str | Path, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise DataFormatError(f"{what} must be an integer, got {token!r}", path, line) from None


def parse_float(token: object, what: str, path: str | Path, line: int) -> float:
    try:
        return float(token)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataFormatError(f"{what} must be a number, got {token!r}", path, line) from None


def require_keys(obj: dict[str, Any], keys: tuple[str, ...], path: str | Path, line: int) -> None:
    missing = [k for k in keys if obj.get(k) in (None, "")]
    if missing:
        raise DataFormatError(f"missing required field(s) {', '.join(missing)}", path, line)


def find_file(folder: Path, *names: str) -> Path | None:
    """First of ``names`` (each also tried with ``.gz``) that exists in ``folder``."""
    for name in names:
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


def require_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset folder not found")
    return folder


def read_sequence_file(path: str | Path) -> list[tuple[int, str, list[str]]]:
    """Parse ``user item item ...`` lines (P5 ``sequential_data.txt``, ML-1M ``sequences.txt``).

    Ids must be integers (normalised to their decimal string); a user may appear only once.
    Returns ``(line_number, user, items)`` rows in file order.
    """
    rows: list[tuple[int, str, list[str]]] = []
    first_line: dict[str, int] = {}
    for number, line in iter_lines(path):
        tokens = line.split()
        if len(tokens) < 2:
            raise DataFormatError("expected 'user_id item_id [item_id ...]'", path, number)
        try:
            ids = [str(int(t)) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not t.lstrip("-").isdigit())
            raise DataFormatError(f"ids must be integers, got {bad!r}", path, number) from None
        user = ids[0]
        if user in first_line:
            raise DataFormatError(
                f"duplicate user id {user!r} (first on line {first_line[user]})", path, number
            )
        first_line[user] = number
        rows.append((number, user, ids[1:]))
    return rows


def iter_atomic(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a RecBole atomic file (tab-separated, header ``name:type``), keyed by the bare names."""
    lines = iter_lines(path)
    _, header = next(lines)
    columns = header.split("\t")
    if not all(":" in c for c in columns):
        raise DataFormatError(f"expected a RecBole header of 'name:type' columns, got {header!r}", path, 1)
    names = [c.split(":", 1)[0] for c in columns]
    missing = [r for r in required if r not in names]
    if missing:
        raise DataFormatError(f"header lacks required column(s) {', '.join(missing)}", path, 1)
    for number, line in lines:
        values = line.split("\t")
        if len(values) != len(names):
            raise DataFormatError(
                f"expected {len(names)} tab-separated columns, got {len(values)}", path, number
            )
        yield number, dict(zip(names, values))
