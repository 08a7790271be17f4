"""Semantic IDs: residual quantization (RQ-KMeans, RQ-VAE) of item embeddings into unique code tuples.

Usage:

    emb = genrec.embed.encode_items(catalog)                    # (n_items, 384), cached on disk
    sid = build_semantic_ids(emb, method="rqkmeans", catalog=catalog)   # 3 x 256 + de-dup level
    sid.item_tokens(0)            # ['<a_12>', '<b_201>', '<c_7>', '<d_0>']
    sid.save_pretrained("out/sid"); SemanticIDs.from_pretrained("out/sid", catalog=catalog)
    sid.encode_new(new_item_embeddings)                         # cold start, no retraining
    mm = build_multimodal_semantic_ids({"text": emb, "image": img}, layout="per_modality",
                                       levels={"text": 2, "image": 1}, catalog=catalog)
    mm.encode_new(mm.quantizer.stack({"text": new_text, "image": new_image}))
    spec = SemanticIDSpec(modalities=["text", "behaviour"], codebook_size=32)  # a recipe's sid: section
    sid = load_or_build_semantic_ids(dataset, "out/sid", spec)  # behaviour from training sequences only
"""

from genrec.sid.builder import build_semantic_ids
from genrec.sid.collisions import balanced_last_level, dedup_index
from genrec.sid.diagnostics import category_purity, code_diagnostics, item_labels, level_usage
from genrec.sid.multimodal import MultimodalQuantizer, build_multimodal_semantic_ids
from genrec.sid.quantizer import Quantizer, ResidualQuantizer
from genrec.sid.rqkmeans import ResidualKMeans, RQKMeansConfig
from genrec.sid.rqvae import RQVAE, RQVAEConfig
from genrec.sid.semantic_ids import SemanticIDs
from genrec.sid.spec import SemanticIDSpec, build_dataset_semantic_ids, load_or_build_semantic_ids

__all__ = [
    "SemanticIDs",
    "build_semantic_ids",
    "load_or_build_semantic_ids",
    "build_dataset_semantic_ids",
    "SemanticIDSpec",
    "build_multimodal_semantic_ids",
    "MultimodalQuantizer",
    "Quantizer",
    "ResidualQuantizer",
    "ResidualKMeans",
    "RQKMeansConfig",
    "RQVAE",
    "RQVAEConfig",
    "balanced_last_level",
    "dedup_index",
    "code_diagnostics",
    "level_usage",
    "category_purity",
    "item_labels",
]
