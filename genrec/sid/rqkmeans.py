"""RQ-KMeans: residual k-means on the item embeddings (no training loop, seconds on a CPU).

Level 1 clusters the embeddings, level 2 clusters what level 1 left unexplained, and so on. It is
the tokenizer of e.g. OneRec/GRID's "RQ-KMeans" and a strong, fast alternative to RQ-VAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genrec.sid.kmeans import kmeans, nearest
from genrec.sid.quantizer import ResidualQuantizer, expand_sizes


@dataclass
class RQKMeansConfig:
    levels: int = 3
    codebook_size: int | list[int] = 256
    niter: int = 25  # Lloyd iterations per level
    nredo: int = 3  # k-means restarts per level (best objective kept); cheap, avoids merged clusters
    seed: int = 0
    backend: str = "auto"  # "faiss", "torch" or "auto" (faiss when installed)


class ResidualKMeans(ResidualQuantizer):
    method = "rqkmeans"

    def __init__(self, codebooks: list[np.ndarray]):
        if not codebooks:
            raise ValueError("ResidualKMeans needs at least one codebook")
        dims = {c.shape[1] for c in codebooks}
        if len(dims) != 1:
            raise ValueError(f"all codebooks must share one dimension, got {sorted(dims)}")
        self.codebooks = [np.asarray(c, dtype=np.float32) for c in codebooks]

    @property
    def input_dim(self) -> int:
        return self.codebooks[0].shape[1]

    def project(self, x: np.ndarray) -> np.ndarray:
        return x

    @classmethod
    def fit(cls, x: np.ndarray, config: RQKMeansConfig, show_progress: bool = True) -> ResidualKMeans:
        sizes = expand_sizes(config.levels, config.codebook_size)
        residual = np.ascontiguousarray(x, dtype=np.float32)
        codebooks = []
        for level, k in enumerate(tqdm(sizes, desc="rq-kmeans levels", disable=not show_progress)):
            centroids = kmeans(
                residual,
                k,
                niter=config.niter,
                seed=config.seed + level,
                backend=config.backend,
                nredo=config.nredo,
            )
            idx, _ = nearest(residual, centroids)
            residual = residual - centroids[idx]
            codebooks.append(centroids)
        return cls(codebooks)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"codebook_sizes": self.codebook_sizes}, {
            f"codebook.{i}": c for i, c in enumerate(self.codebooks)
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> ResidualKMeans:
        n = len(config["codebook_sizes"])
        return cls([tensors[f"codebook.{i}"] for i in range(n)])
