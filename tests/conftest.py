"""Shared fixtures: the research datasets (skipped with a reason when absent) and small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GENREC_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared(name: str) -> Path:
    from genrec.utils import data_dir

    root = data_dir()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"shared dataset {name!r} not found (set GENREC_DATA_DIR or place it at ../shared/data)")
    return root / name


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    return _shared("amazon2014-beauty")


@pytest.fixture(scope="session")
def ml1m_posters_dir() -> Path:
    return _shared("movielens-1m-posters")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return _shared("movielens-100k")


@pytest.fixture(scope="session")
def instruments_dir() -> Path:
    return _shared("amazon2014-musical-instruments")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest single-threaded, especially on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
