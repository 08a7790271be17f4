"""Where the research datasets live. They are read by path and never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

_ENV = "GENREC_DATA_DIR"


def data_dir() -> Path | None:
    """``$GENREC_DATA_DIR``, else ``../shared/data`` relative to the repo or the working directory."""
    env = os.environ.get(_ENV)
    if env:
        return Path(env)
    candidates = [
        Path(__file__).resolve().parents[2].parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return None


def shared_dataset(name: str) -> Path:
    """Path of one dataset folder (e.g. ``amazon2014-beauty``); a clear error when it is absent."""
    root = data_dir()
    if root is None or not (root / name).is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} not found: set {_ENV} to the folder holding it "
            f"(looked in {root if root else '../shared/data'})"
        )
    return root / name
