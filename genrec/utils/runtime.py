"""Process-level knobs: thread counts (CPU throughput depends on them), seeds and logging."""

from __future__ import annotations

import logging
import os
import random

import numpy as np


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads from the argument or ``$GENREC_THREADS``; returns the count used."""
    import torch

    if num_threads is None:
        env = os.environ.get("GENREC_THREADS")
        num_threads = int(env) if env else (os.cpu_count() or 1)
    num_threads = max(1, int(num_threads))
    torch.set_num_threads(num_threads)
    return num_threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep data layer importable
        return
    torch.manual_seed(seed)


def get_logger(name: str) -> logging.Logger:
    """Library loggers stay silent unless the application configures logging (the CLI does)."""
    return logging.getLogger(name)
