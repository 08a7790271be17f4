"""User encoders: mean of item embeddings, SASRec state, pooled causal-LM hidden states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from genrec.baselines import SASRec, SASRecConfig
from genrec.errors import EmptyHistoryError, UnknownItemError
from genrec.users import CausalLMUserEncoder, MeanItemEncoder, SASRecUserEncoder, UserEncoder, title_prompt


def test_mean_encoder_known_answer():
    table = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    enc = MeanItemEncoder(table, max_len=2, normalize=False)
    out = enc.encode([np.array([0, 1]), [2], np.array([2, 0, 1])])  # the last keeps only its 2 newest items
    np.testing.assert_allclose(out.numpy(), [[0.5, 0.5], [1.0, 1.0], [0.5, 0.5]])
    assert isinstance(enc, UserEncoder) and enc.dim == 2
    normed = MeanItemEncoder(table).encode([[2]])
    np.testing.assert_allclose(normed.norm(dim=-1).numpy(), [1.0], rtol=1e-6)


def test_mean_encoder_bad_histories():
    enc = MeanItemEncoder(np.eye(3, dtype=np.float32))
    with pytest.raises(UnknownItemError, match="history 1"):
        enc.encode([[0], [5]])
    with pytest.raises(EmptyHistoryError, match="history 0"):
        enc.encode([[]])


def test_sasrec_encoder_matches_user_states():
    torch.manual_seed(0)
    sasrec = SASRec(10, SASRecConfig(hidden=8, layers=1, max_len=5))
    enc = SASRecUserEncoder(sasrec, normalize=False)
    hist = [np.array([1, 2, 3]), np.array([4])]
    assert enc.dim == 8
    torch.testing.assert_close(enc.encode(hist), sasrec.user_states(hist))
    assert not torch.allclose(enc.encode(hist)[0], enc.encode(hist)[1])
    with pytest.raises(UnknownItemError, match="10 items"):
        enc.encode([np.array([10])])


def tiny_lm() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    words = [
        "<pad>",
        "<unk>",
        "<eos>",
        "the",
        "user",
        "interacted",
        "with,",
        "in",
        "order:",
        "alpha;",
        "beta;",
    ]
    words += ["alpha.", "beta.", "gamma.", "gamma;"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg), tok


def test_causal_lm_encoder_pools_without_padding_effects():
    model, tok = tiny_lm()
    render = title_prompt(["Alpha", "Beta", "Gamma"])
    assert render([0, 2]) == "The user interacted with, in order: Alpha; Gamma."
    tok.padding_side = "right"
    enc = CausalLMUserEncoder(model, tok, lambda h: render(h).lower(), batch_size=2, normalize=False)
    assert enc.dim == 16 and tok.pad_token == "<eos>"  # a missing pad token falls back to EOS
    batched = enc.encode([[0, 1, 2], [1]])
    alone = torch.cat([enc.encode([[0, 1, 2]]), enc.encode([[1]])])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)  # padding is masked out of the mean
    assert not torch.allclose(batched[0], batched[1])


def test_causal_lm_encoder_from_recommender_like_object():
    model, tok = tiny_lm()

    class Rec:  # anything exposing .model and .tokenizer, e.g. genrec.model.GenerativeRecommender
        pass

    rec = Rec()
    rec.model, rec.tokenizer = model, tok
    enc = CausalLMUserEncoder.from_recommender(rec, lambda h: "the user interacted with, in order: alpha.")
    out = enc.encode([[0]])
    assert out.shape == (1, 16)
    np.testing.assert_allclose(out.norm(dim=-1).numpy(), [1.0], rtol=1e-5)
