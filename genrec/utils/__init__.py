"""Small helpers used across layers: atomic file writes, data paths, threads and seeds."""

from genrec.utils.io import atomic_directory, atomic_write, atomic_write_json, read_json
from genrec.utils.paths import data_dir, shared_dataset
from genrec.utils.runtime import configure_threads, get_logger, seed_everything

__all__ = [
    "atomic_directory",
    "atomic_write",
    "atomic_write_json",
    "read_json",
    "data_dir",
    "shared_dataset",
    "configure_threads",
    "get_logger",
    "seed_everything",
]
