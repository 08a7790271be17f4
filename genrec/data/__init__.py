"""Datasets: the core representation (:mod:`genrec.data.dataset`) and one loader per source.

``load_dataset("beauty")`` resolves short names to the shared research datasets (read by path, never
copied); ``load_dataset("path/to/folder_or_file")`` detects the layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrec.data.amazon import Review, load_amazon_p5, load_amazon_reviews, load_reviews, read_amazon_meta
from genrec.data.attributes import ItemAttributes, PriceBands
from genrec.data.dataset import Catalog, Item, SequenceDataset, SplitExamples, build_dataset
from genrec.data.generic import load_generic, read_items_jsonl, write_items_jsonl
from genrec.data.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_posters,
    load_movielens_users,
    read_movies_dat,
)
from genrec.data.reviews import (
    ExplanationTarget,
    FeatureVocabulary,
    ReviewSplit,
    dataset_reviews,
    explanation_targets,
    extract_features,
    read_reviews,
    split_reviews,
)
from genrec.data.stats import dataset_stats, plot_length_histogram
from genrec.data.synthetic import make_synthetic
from genrec.data.text import clean_text

# Short name -> (shared folder, loader). Aliases map onto the same entry.
_SHARED = {
    "beauty": ("amazon2014-beauty", load_amazon_p5),
    "sports": ("amazon2014-sports", load_amazon_p5),
    "toys": ("amazon2014-toys", load_amazon_p5),
    "ml1m-posters": ("movielens-1m-posters", load_movielens_posters),
    "ml100k": ("movielens-100k", load_movielens_100k),
}
_ALIASES = {
    "amazon2014-beauty": "beauty",
    "amazon2014-sports": "sports",
    "amazon2014-toys": "toys",
    "ml-1m-posters": "ml1m-posters",
    "movielens-1m-posters": "ml1m-posters",
    "ml-100k": "ml100k",
    "movielens-100k": "ml100k",
}
_INSTRUMENTS = ("instruments", "musical-instruments", "amazon2014-musical-instruments")
NAMES = (*_SHARED, "instruments", "synthetic")


def load_dataset(name_or_path: str | Path, **kwargs: Any) -> SequenceDataset:
    """Load by short name (``beauty``, ``sports``, ``toys``, ``ml1m-posters``, ``ml100k``,
    ``instruments``, ``synthetic``) or by path; ``kwargs`` go to the underlying loader."""
    from genrec.utils.paths import shared_dataset

    key = str(name_or_path).lower()
    key = _ALIASES.get(key, key)
    if key == "synthetic":
        return make_synthetic(**kwargs)
    if key in _SHARED:
        folder, loader = _SHARED[key]
        return loader(shared_dataset(folder), **kwargs)
    if key in _INSTRUMENTS:
        folder = shared_dataset("amazon2014-musical-instruments")
        return load_amazon_reviews(folder / "reviews_Musical_Instruments_5.json.gz", **kwargs)
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(NAMES)
        raise ValueError(f"unknown dataset {str(name_or_path)!r}: not a path and not one of {known}")
    return _load_path(path, **kwargs)


def _load_path(path: Path, **kwargs: Any) -> SequenceDataset:
    """Pick the loader from the files present."""
    if path.is_file():
        if path.name.startswith("reviews"):  # Amazon dumps: reviews_<Category>[_5].json.gz
            return load_amazon_reviews(path, **kwargs)
        return load_generic(path, **kwargs)
    names = {p.name for p in path.iterdir()}
    if names & {"sequential_data.txt", "sequential.txt"}:
        return load_amazon_p5(path, **kwargs)
    if "sequences.txt" in names and "movies.dat" in names:
        return load_movielens_posters(path, **kwargs)
    if "ratings.dat" in names:
        return load_movielens_1m(path, **kwargs)
    if names & {"u.data", "ml-100k.inter", "ml-100k.inter.gz"}:
        return load_movielens_100k(path, **kwargs)
    raise ValueError(
        f"{path}: cannot tell the dataset layout (expected sequential_data.txt, sequences.txt + movies.dat, "
        "ratings.dat, u.data or ml-100k.inter)"
    )


__all__ = [
    "NAMES",
    "Catalog",
    "ExplanationTarget",
    "FeatureVocabulary",
    "Item",
    "ItemAttributes",
    "PriceBands",
    "Review",
    "ReviewSplit",
    "SequenceDataset",
    "SplitExamples",
    "build_dataset",
    "clean_text",
    "dataset_reviews",
    "dataset_stats",
    "explanation_targets",
    "extract_features",
    "load_amazon_p5",
    "load_amazon_reviews",
    "load_dataset",
    "load_generic",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_movielens_posters",
    "load_movielens_users",
    "load_reviews",
    "make_synthetic",
    "plot_length_histogram",
    "read_amazon_meta",
    "read_items_jsonl",
    "read_movies_dat",
    "read_reviews",
    "split_reviews",
    "write_items_jsonl",
]
