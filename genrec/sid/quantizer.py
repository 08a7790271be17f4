"""Residual quantizers: map item embeddings to one code per level, and back again for new items.

Both methods share the same residual step: at level ``l`` take the nearest codeword of codebook
``l`` to the current residual and subtract it. They differ in the space that is quantized:
RQ-KMeans works on the embeddings themselves, RQ-VAE on a learned latent. A quantizer's
``state()`` holds everything needed to encode *new* items later (cold start) without retraining.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from genrec.sid.kmeans import nearest


class Quantizer(ABC):
    """Maps item embeddings to one code per level; ``state()`` rebuilds it to encode new items later."""

    method: ClassVar[str]
    codebooks: list[np.ndarray]

    @property
    def codebook_sizes(self) -> list[int]:
        return [len(c) for c in self.codebooks]

    @property
    @abstractmethod
    def input_dim(self) -> int:
        """Dimension of the item embeddings this quantizer was fitted on."""

    @abstractmethod
    def encode(self, x: np.ndarray, return_last_residual: bool = False):
        """Codes ``(n, levels)``; optionally also the residual entering the last level (for balancing)."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON config and named arrays (saved as safetensors) that rebuild this quantizer."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Quantizer: ...


class ResidualQuantizer(Quantizer):
    """Codebooks over a (possibly learned) space, applied residually level by level."""

    @abstractmethod
    def project(self, x: np.ndarray) -> np.ndarray:
        """Map embeddings into the space the codebooks live in."""

    def encode(self, x: np.ndarray, return_last_residual: bool = False):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected embeddings of shape (n, {self.input_dim}), got {x.shape}")
        residual = self.project(x)
        codes = np.empty((len(x), len(self.codebooks)), dtype=np.int64)
        last = residual
        for level, codebook in enumerate(self.codebooks):
            last = residual
            codes[:, level], _ = nearest(residual, codebook)
            residual = residual - codebook[codes[:, level]]
        return (codes, last) if return_last_residual else codes


def expand_sizes(levels: int, codebook_size: int | list[int]) -> list[int]:
    """``256`` -> ``[256, 256, 256]``; a list is checked against ``levels``."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    sizes = (
        [int(codebook_size)] * levels if isinstance(codebook_size, int) else [int(s) for s in codebook_size]
    )
    if len(sizes) != levels:
        raise ValueError(f"got {len(sizes)} codebook sizes for {levels} levels")
    if any(s < 1 for s in sizes):
        raise ValueError(f"codebook sizes must be >= 1, got {sizes}")
    return sizes
