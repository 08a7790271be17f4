"""Behaviour embeddings: items that users consume near each other get nearby vectors.

PPMI-SVD over windowed co-occurrence counts (Levy & Goldberg's word2vec-as-factorisation, applied to item
sequences, as item2vec-style collaborative features in LC-Rec/LETTER/EAGER-type semantic IDs). Deterministic,
no training loop, and a few seconds for catalogs of thousands of items. Items never seen in training get a
zero row, so :func:`genrec.sid.multimodal.build_multimodal_semantic_ids` codes them from content alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from genrec.embed.contrastive import cooccurrence_pairs
from genrec.embed.encoder import l2_normalize


def cooccurrence_embeddings(
    sequences: Sequence[np.ndarray], num_items: int, dim: int = 64, window: int = 5, seed: int = 0
) -> np.ndarray:
    """``(num_items, dim)`` L2-normalised rows from the PPMI matrix of items within ``window`` positions.

    Pass the *training* sequences only, so validation and test targets never shape the codes.
    """
    if dim < 1 or dim >= num_items:
        raise ValueError(f"dim must be in 1..{num_items - 1} (num_items - 1), got {dim}")
    pairs = cooccurrence_pairs(sequences, window=window)
    if len(pairs) == 0:
        raise ValueError("no co-occurring item pairs in the training sequences")
    if pairs.max() >= num_items:
        raise ValueError(f"sequences hold item index {int(pairs.max())} but num_items is {num_items}")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])  # symmetric counts
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    counts = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_items, num_items)).tocsr()
    counts.sum_duplicates()
    row_sum = np.asarray(counts.sum(axis=1)).ravel()
    total = row_sum.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (row_sum[coo.row] * row_sum[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)
    v0 = np.random.default_rng(seed).standard_normal(num_items)
    u, s, _ = svds(ppmi, k=dim, v0=v0)
    order = np.argsort(-s)
    emb = (u[:, order] * np.sqrt(s[order])).astype(np.float32)
    emb[row_sum == 0] = 0.0
    return l2_normalize(emb)
