"""Semantic IDs: residual quantization (RQ-KMeans, RQ-VAE) of item embeddings into unique code tuples."""

from genrec.sid.builder import build_semantic_ids
from genrec.sid.collisions import balanced_last_level, dedup_index
from genrec.sid.diagnostics import code_diagnostics, level_usage
from genrec.sid.quantizer import ResidualQuantizer
from genrec.sid.rqkmeans import ResidualKMeans, RQKMeansConfig
from genrec.sid.rqvae import RQVAE, RQVAEConfig
from genrec.sid.semantic_ids import SemanticIDs

__all__ = [
    "SemanticIDs",
    "build_semantic_ids",
    "ResidualQuantizer",
    "ResidualKMeans",
    "RQKMeansConfig",
    "RQVAE",
    "RQVAEConfig",
    "balanced_last_level",
    "dedup_index",
    "code_diagnostics",
    "level_usage",
]
