"""Item embeddings: text through an editable template + sentence-transformers, optional image fusion.

Usage:

    emb = encode_items(catalog)                                  # bundled all-MiniLM-L6-v2, disk cache
    emb = encode_items(catalog, model="BAAI/bge-small-en-v1.5", template="{{ title }} ({{ brand }})")
    img = encode_item_images(catalog, CLIPImageEncoder("openai/clip-vit-base-patch32"), missing="zeros")
    fused = fuse_embeddings([emb, img], method="concat", weights=[0.7, 0.3])
"""

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
    encode_images,
    encode_item_images,
    fuse_embeddings,
)
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
    "encode_images",
    "encode_item_images",
    "fuse_embeddings",
]
