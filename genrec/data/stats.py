"""Dataset statistics for reports and sanity checks (the numbers papers put in their data tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.dataset import SequenceDataset
from genrec.utils.io import atomic_write


def _length_bins(lengths: np.ndarray, num_bins: int) -> np.ndarray:
    """Integer-aligned bin edges: one bin per length for short ranges, else ``num_bins`` equal bins."""
    lo, hi = int(lengths.min()), int(lengths.max())
    if hi - lo + 1 <= num_bins:
        return np.arange(lo, hi + 2) - 0.5
    return np.linspace(lo, hi + 1, num_bins + 1)


def dataset_stats(ds: SequenceDataset, num_bins: int = 20) -> dict[str, Any]:
    """Users, items, interactions, density and the sequence-length distribution (with a histogram)."""
    lengths = np.array([len(s) for s in ds.sequences], dtype=np.int64)
    if len(lengths) == 0:
        raise ValueError(f"{ds.name}: dataset has no users")
    counts, edges = np.histogram(lengths, bins=_length_bins(lengths, num_bins))
    interacted = np.unique(np.concatenate(ds.sequences)).size
    return {
        "name": ds.name,
        "synthetic": ds.synthetic,
        "users": ds.num_users,
        "items": ds.num_items,
        "items_with_interactions": int(interacted),
        "interactions": ds.num_interactions,
        "density": ds.num_interactions / (ds.num_users * ds.num_items),
        "length": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)),
            "max": int(lengths.max()),
        },
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def plot_length_histogram(ds: SequenceDataset, path: str | Path, num_bins: int = 40) -> Path:
    """Write a PNG histogram of sequence lengths (log-scaled counts: lengths are heavy-tailed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = dataset_stats(ds, num_bins)
    edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    try:
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4C72B0", edgecolor="white")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (interactions per user)")
        ax.set_ylabel("users")
        tag = " (synthetic)" if ds.synthetic else ""
        length = stats["length"]
        ax.set_title(
            f"{ds.name}{tag}: {stats['users']:,} users, {stats['items']:,} items\n"
            f"length min {length['min']} / median {length['median']:g} / mean {length['mean']:.1f} / "
            f"max {length['max']}",
            fontsize=9,
        )
        fig.tight_layout()
        path = Path(path)
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)
    return path
