"""k-means and nearest-code search shared by the semantic-ID quantizers.

faiss is the fast path (multi-threaded BLAS, C++ Lloyd iterations, k-means++ seeding, which avoids
the merged-cluster local optima random seeding falls into on small inputs); a small torch implementation
(k-means++ init, Lloyd iterations, empty clusters re-seeded from the worst-fit points) is the
fallback where faiss is missing or when ``backend="torch"`` is asked for.
"""

from __future__ import annotations

import numpy as np

from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

BACKENDS = ("auto", "faiss", "torch")


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def kmeans(
    x: np.ndarray, k: int, niter: int = 25, seed: int = 0, backend: str = "auto", nredo: int = 1
) -> np.ndarray:
    """Centroids ``(k, d)`` float32 of ``x`` ``(n, d)``; deterministic for a given seed and backend.

    ``nredo`` runs k-means that many times from different seeds and keeps the lowest objective.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"k-means input must be 2-D, got shape {x.shape}")
    if len(x) < k:
        raise ValueError(
            f"k-means with {k} clusters needs at least {k} points, got {len(x)}; lower codebook_size"
        )
    if backend == "faiss" or (backend == "auto" and _faiss_available()):
        import faiss

        opts = {
            "niter": niter,
            "seed": seed,
            "nredo": nredo,
            "verbose": False,
            "max_points_per_centroid": 1 << 20,
        }
        if hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):  # faiss >= 1.12; random init before
            opts["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        km = faiss.Kmeans(x.shape[1], k, **opts)
        km.train(x)
        return np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])
    runs = [_torch_kmeans(x, k, niter, seed + r) for r in range(nredo)]
    return min(runs, key=lambda c: float(nearest(x, c)[1].sum()))


def _torch_kmeans(x: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    import torch

    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(x)
    n = len(data)
    # k-means++ seeding: each new centroid drawn with probability proportional to squared distance.
    centroids = torch.empty((k, data.shape[1]), dtype=data.dtype)
    centroids[0] = data[torch.randint(n, (1,), generator=gen)]
    d2 = ((data - centroids[0]) ** 2).sum(1)
    for j in range(1, k):
        probs = d2.clamp_min(0)
        idx = (
            torch.multinomial(probs / probs.sum(), 1, generator=gen)
            if probs.sum() > 0
            else torch.tensor([j % n])
        )
        centroids[j] = data[idx]
        d2 = torch.minimum(d2, ((data - centroids[j]) ** 2).sum(1))
    for _ in range(niter):
        dist = torch.cdist(data, centroids).pow_(2)
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, data)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None].to(data.dtype)
        empty = (~nonempty).nonzero().flatten()
        if len(empty):
            worst = dist.gather(1, assign[:, None]).flatten().argsort(descending=True)[: len(empty)]
            centroids[empty] = data[worst]
    return centroids.numpy().astype(np.float32)


def nearest(x: np.ndarray, codebook: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest codeword (squared L2) for each row, and that squared distance."""
    x = np.asarray(x, dtype=np.float32)
    codebook = np.asarray(codebook, dtype=np.float32)
    cnorm = (codebook**2).sum(1)
    idx = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        d = (xs**2).sum(1, keepdims=True) - 2.0 * xs @ codebook.T + cnorm[None]
        idx[s : s + chunk] = d.argmin(1)
        dist[s : s + chunk] = np.maximum(d[np.arange(len(xs)), idx[s : s + chunk]], 0.0)
    return idx, dist


def squared_distances(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Full ``(n, k)`` squared-L2 distance matrix (for small n)."""
    x = np.asarray(x, dtype=np.float32)
    codebook = np.asarray(codebook, dtype=np.float32)
    d = (x**2).sum(1, keepdims=True) - 2.0 * x @ codebook.T + (codebook**2).sum(1)[None]
    return np.maximum(d, 0.0)
