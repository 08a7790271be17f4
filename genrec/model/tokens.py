"""Semantic-ID tokens in the vocabulary: one special token per code value per level (``<a_12>``...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

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


def add_sid_tokens(
    tokenizer: Any, model: Any, sid: Any, item_texts: Sequence[str] | None = None
) -> np.ndarray:
    """Add the SID tokens as special tokens (never split), resize the embeddings, return the item token table.

    Idempotent: tokens already present are kept with their ids. New rows start from the mean of the old
    embeddings (transformers' mean resizing), a better start than random for a pretrained model; with
    ``item_texts`` (one per item, e.g. titles) they start from the items' text instead, see
    :func:`init_sid_embeddings_from_text`.
    """
    if item_texts is not None and len(item_texts) != len(sid.codes):  # checked before anything changes
        raise ValueError(f"{len(item_texts)} item texts for {len(sid.codes)} items with semantic IDs")
    tokens = [t for t in sid.all_tokens() if t not in tokenizer.get_vocab()]
    if tokens:
        tokenizer.add_tokens(tokens, special_tokens=True)
        logger.info("added %d SID tokens; vocabulary is now %d", len(tokens), len(tokenizer))
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    sid_vocab_ids(tokenizer, sid)  # every token resolves, or a clear error
    if tokens and item_texts is not None:
        init_sid_embeddings_from_text(tokenizer, model, sid, item_texts, only=tokens)
    return item_token_table(tokenizer, sid)


@torch.no_grad()
def init_sid_embeddings_from_text(
    tokenizer: Any,
    model: Any,
    sid: Any,
    item_texts: Sequence[str],
    only: Sequence[str] | None = None,
) -> int:
    """Start each SID token at the mean word embedding of the texts of the items that carry it.

    ``<a_12>`` then means, from step 0, "items like these titles": a pretrained LM reads a history of SID
    tokens with some of the meaning their items' words have, and (through a tied head) already scores
    similar codes higher. Rows are rescaled to the vocabulary's mean norm, since an average of many word
    vectors is much shorter than any one of them. Untied output rows get the same treatment from the
    output matrix. Tokens that no item carries keep their rows. Returns the number of rows set.
    """
    if len(item_texts) != len(sid.codes):
        raise ValueError(f"{len(item_texts)} item texts for {len(sid.codes)} items with semantic IDs")
    wanted = set(only) if only is not None else None
    ids = tokenizer(list(item_texts), add_special_tokens=False)["input_ids"]
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != matrices[0].data_ptr():
        matrices.append(output.weight)
    old_rows = min(tokenizer.convert_tokens_to_ids(sid.all_tokens()))
    has_text = np.array([len(t) > 0 for t in ids])
    # per item: the mean of its words' rows, then per SID token: the mean over its items with text
    item_vectors = [
        torch.stack([m[torch.tensor(t)].float().mean(0) if t else m.new_zeros(m.shape[1]) for t in ids])
        for m in matrices
    ]
    scales = [m[:old_rows].float().norm(dim=-1).mean() for m in matrices]
    set_rows = 0
    for level in range(sid.codes.shape[1]):
        for value in np.unique(sid.codes[:, level]):
            token = sid.token(level, value)
            members = torch.from_numpy(np.flatnonzero((sid.codes[:, level] == value) & has_text))
            if (wanted is not None and token not in wanted) or len(members) == 0:
                continue
            row = tokenizer.convert_tokens_to_ids(token)
            for matrix, vectors, scale in zip(matrices, item_vectors, scales):
                direction = vectors[members].mean(0)
                matrix[row] = (direction * scale / direction.norm().clamp(min=1e-12)).to(matrix.dtype)
            set_rows += 1
    logger.info("initialised %d SID token rows from item texts", set_rows)
    return set_rows
