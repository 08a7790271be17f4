"""Tiny, fast stand-ins for the LLM tests: a synthetic dataset, a hand-made SID map, a byte-level BPE
tokenizer with a ChatML template, and a 2-layer random Llama saved to a folder (so it reloads by path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from genrec.data import make_synthetic
from genrec.sid import SemanticIDs

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_dataset(num_users: int = 30, num_items: int = 40, seed: int = 0):
    return make_synthetic(num_users=num_users, num_items=num_items, num_categories=4, seed=seed, max_length=8)


def tiny_sid(catalog, sizes=(4, 4, 4), shift: int = 0) -> SemanticIDs:
    """Unique codes in mixed radix; ``shift`` rotates them (a different, still valid, SID map)."""
    n = len(catalog)
    k = (np.arange(n) + shift) % int(np.prod(sizes))
    codes = np.stack([k // (sizes[1] * sizes[2]), (k // sizes[2]) % sizes[1], k % sizes[2]], axis=1)
    return SemanticIDs(codes, list(sizes), item_ids=catalog.ids)


def tiny_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


def tiny_base_model(folder: Path, catalog, tied: bool = True, seed: int = 0, hidden: int = 32) -> str:
    """Save a random 2-layer Llama + tokenizer under ``folder``; returns the path to load it from."""
    texts = catalog.titles + ["The user interacted with these items in order. Which item next? You are"]
    tok = tiny_tokenizer(texts)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
