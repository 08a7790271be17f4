"""Item embeddings: text through an editable template + sentence-transformers, optional image fusion.

Usage:

    emb = encode_items(catalog)                                  # bundled all-MiniLM-L6-v2, disk cache
    emb = encode_items(catalog, model="BAAI/bge-small-en-v1.5", template="{{ title }} ({{ brand }})")
    img = embed_item_images(catalog, load_image_encoder("path/to/clip_or_siglip"))  # cached, skips bad files
    fused = fuse_embeddings([emb, img.embeddings], method="concat", weights=[0.7, 0.3])
    enc = pretrain_image_encoder(catalog, emb, ImagePretrainConfig(), output_dir="runs/img")  # CLIP-style
"""

from genrec.embed.behaviour import cooccurrence_embeddings
from genrec.embed.contrastive import (
    BehaviourAlignConfig,
    align_to_behaviour,
    cooccurrence_pairs,
    info_nce,
    project,
)
from genrec.embed.encoder import (
    default_cache_dir,
    default_model_path,
    encode_items,
    encode_texts,
    l2_normalize,
    load_text_encoder,
)
from genrec.embed.image import (
    CLIPImageEncoder,
    ImageEncoder,
    ItemImageEmbeddings,
    OpenCLIPImageEncoder,
    embed_item_images,
    encode_images,
    encode_item_images,
    encode_item_modalities,
    fuse_embeddings,
    load_image_encoder,
)
from genrec.embed.image_pretrain import ImagePretrainConfig, ItemImageEncoder, pretrain_image_encoder
from genrec.embed.impute import impute_missing_modalities
from genrec.embed.text import DEFAULT_ITEM_TEMPLATE, ItemTextTemplate, render_item_texts

__all__ = [
    "DEFAULT_ITEM_TEMPLATE",
    "ItemTextTemplate",
    "render_item_texts",
    "encode_items",
    "encode_texts",
    "default_cache_dir",
    "default_model_path",
    "load_text_encoder",
    "l2_normalize",
    "ImageEncoder",
    "CLIPImageEncoder",
    "OpenCLIPImageEncoder",
    "ItemImageEmbeddings",
    "load_image_encoder",
    "embed_item_images",
    "encode_item_modalities",
    "encode_images",
    "encode_item_images",
    "fuse_embeddings",
    "ImagePretrainConfig",
    "ItemImageEncoder",
    "pretrain_image_encoder",
    "BehaviourAlignConfig",
    "align_to_behaviour",
    "cooccurrence_embeddings",
    "cooccurrence_pairs",
    "impute_missing_modalities",
    "info_nce",
    "project",
]
