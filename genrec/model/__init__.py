"""LLM recommenders: base-model loading, SID tokens, LoRA adapters and :class:`GenerativeRecommender`.

``genrec.model.compact`` (the from-scratch compact backbone) and ``genrec.model.channels`` (several of them
merged) are imported on demand, not here.
"""

from genrec.model.adapters import LoraSettings, apply_lora
from genrec.model.explain import ExplanationConfig
from genrec.model.loading import DEFAULT_BASE_MODEL, cache_dir, dequantize_gguf, load_base_model
from genrec.model.recommender import GenerativeRecommender, Recommendation, sid_fingerprint
from genrec.model.tokens import add_sid_tokens, item_token_table, sid_vocab_ids

__all__ = [
    "DEFAULT_BASE_MODEL",
    "ExplanationConfig",
    "GenerativeRecommender",
    "LoraSettings",
    "Recommendation",
    "add_sid_tokens",
    "apply_lora",
    "cache_dir",
    "dequantize_gguf",
    "item_token_table",
    "load_base_model",
    "sid_fingerprint",
    "sid_vocab_ids",
]
