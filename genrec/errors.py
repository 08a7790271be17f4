"""Exceptions shared across genrec. Every message names the file, line or field at fault."""

from __future__ import annotations

from pathlib import Path


class GenrecError(Exception):
    """Base class for all genrec errors."""


class DataFormatError(GenrecError, ValueError):
    """A data file is malformed. Carries the file and (1-based) line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class UnknownItemError(GenrecError, KeyError):
    """An item id is not in the catalog."""

    def __init__(self, item_id: object, context: str = ""):
        self.item_id = item_id
        self.context = context
        super().__init__(f"unknown item id {item_id!r}" + (f" ({context})" if context else ""))

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class EmptyHistoryError(GenrecError, ValueError):
    """A user history is empty where one is required."""


class CheckpointMismatchError(GenrecError, ValueError):
    """A saved artifact does not match the catalog, config or model it is loaded against."""


class TemplateError(GenrecError, ValueError):
    """A prompt template is invalid: missing or unknown variables, bad syntax."""
