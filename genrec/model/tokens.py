"""Semantic-ID tokens in the vocabulary: one special token per code value per level (``<a_12>``...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec.utils import get_logger

logger = get_logger(__name__)


def sid_vocab_ids(tokenizer: Any, sid: Any) -> np.ndarray:
    """Token ids of every SID token (all code values of all levels), in ``sid.all_tokens()`` order."""
    tokens = list(sid.all_tokens())
    ids = tokenizer.convert_tokens_to_ids(tokens)
    missing = [t for t, i in zip(tokens, ids) if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise KeyError(
            f"{len(missing)} SID tokens are not in the tokenizer (first: {missing[0]!r}); call add_sid_tokens"
        )
    return np.asarray(ids, dtype=np.int64)


def item_token_table(tokenizer: Any, sid: Any) -> np.ndarray:
    """``(n_items, L)`` token ids, row i = item i's SID; constrained decoding builds its trie on it."""
    n = len(sid.codes)
    flat = [tok for i in range(n) for tok in sid.item_tokens(i)]
    ids = np.asarray(tokenizer.convert_tokens_to_ids(flat), dtype=np.int64)
    return ids.reshape(n, -1)


def add_sid_tokens(tokenizer: Any, model: Any, sid: Any) -> np.ndarray:
    """Add the SID tokens as special tokens (never split), resize the embeddings, return the item token table.

    Idempotent: tokens already present are kept with their ids. New rows start from the mean of the old
    embeddings (transformers' mean resizing), a better start than random for a pretrained model.
    """
    tokens = [t for t in sid.all_tokens() if t not in tokenizer.get_vocab()]
    if tokens:
        tokenizer.add_tokens(tokens, special_tokens=True)
        logger.info("added %d SID tokens; vocabulary is now %d", len(tokens), len(tokenizer))
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    sid_vocab_ids(tokenizer, sid)  # every token resolves, or a clear error
    return item_token_table(tokenizer, sid)
