"""constrained_beam_search against the HF generate reference and an exhaustive answer on a tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genrec.decoding import ItemTrie, constrained_beam_search, hf_constrained_generate
from genrec.decoding.beam_search import _length_groups

VOCAB = 64
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    pad_token_id=0,
)


def tiny_model(model_cls, config):
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():  # sharper distributions than the default init, so rankings are not near-ties
        model.lm_head.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_model(LlamaForCausalLM, LlamaConfig(**TINY))


@pytest.fixture(scope="module")
def trie() -> ItemTrie:
    """84 items, 4 tokens each; level d uses token ids 10 + 8d + code, level 3 de-duplicates."""
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 8, size=(300, 3)), axis=0)[::2][:84]
    dedup = np.arange(len(codes)) % 2
    tokens = np.concatenate([codes + 10 + 8 * np.arange(3), 34 + dedup[:, None]], axis=1)
    return ItemTrie.from_token_ids(tokens)


def left_padded(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(1, 10, (n,), generator=gen)
        mask[i, width - n :] = 1
    return ids, mask


def exhaustive_scores(model, ids: torch.Tensor, trie: ItemTrie) -> torch.Tensor:
    """Summed log-prob of every item's path after one unpadded prompt, by teacher forcing."""
    paths = torch.as_tensor(trie.token_ids)
    seqs = torch.cat([ids.expand(len(paths), -1), paths], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(model(seqs).logits.float(), dim=-1)
    start = ids.shape[1]
    steps = logp[:, start - 1 : -1].gather(-1, paths.unsqueeze(-1)).squeeze(-1)
    return steps.sum(-1)


def test_matches_hf_generate(model, trie):
    ids, mask = left_padded([7, 12, 4, 9])
    ours, our_scores = constrained_beam_search(model, ids, mask, trie, num_beams=8, num_return=8)
    ref, ref_scores = hf_constrained_generate(model, ids, mask, trie, num_beams=8, num_return=8)
    assert torch.equal(ours, ref)
    torch.testing.assert_close(our_scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_beam_covering_catalog_is_exact(model, trie):
    """With more beams than items nothing is pruned: the result is the exhaustive ranking."""
    ids, mask = left_padded([6])
    n = trie.num_items
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=n + 16, num_return=n)
    exact = exhaustive_scores(model, ids, trie)
    assert sorted(items[0].tolist()) == list(range(n))
    assert torch.equal(items[0], exact.argsort(descending=True))
    torch.testing.assert_close(scores[0], exact[items[0]], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_beams,num_return", [(1, 1), (5, 3), (20, 20), (50, 50)])
def test_lists_are_valid_distinct_and_sorted(model, trie, num_beams, num_return):
    ids, mask = left_padded([5, 11, 8])
    items, scores = constrained_beam_search(
        model, ids, mask, trie, num_beams=num_beams, num_return=num_return
    )
    assert items.shape == scores.shape == (3, num_return)
    assert items.dtype == torch.int64
    assert ((items >= 0) & (items < trie.num_items)).all()
    for row in items:
        assert len(set(row.tolist())) == num_return
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_batch_with_left_padding_equals_one_at_a_time(model, trie):
    lengths = [3, 10, 6]
    ids, mask = left_padded(lengths)
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=10, num_return=10)
    for i, n in enumerate(lengths):
        alone, alone_scores = constrained_beam_search(
            model, ids[i : i + 1, -n:], mask[i : i + 1, -n:], trie, num_beams=10, num_return=10
        )
        assert torch.equal(items[i], alone[0])
        torch.testing.assert_close(scores[i], alone_scores[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("max_padding", [0.0, 0.3, 1.0])
def test_length_grouped_prefill_equals_one_padded_batch(model, trie, max_padding):
    """Encoding prompts in length groups (and merging their caches) changes cost, never results."""
    ids, mask = left_padded([3, 14, 6, 13, 9])
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=10, max_padding=max_padding)
    ref, ref_scores = hf_constrained_generate(model, ids, mask, trie, num_beams=10)
    assert torch.equal(items, ref)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "lengths,max_padding,groups",
    [
        ([5, 5, 5], 0.0, [[0, 1, 2]]),
        ([3, 10, 6], 0.0, [[1], [2], [0]]),
        ([10, 9, 2], 0.1, [[0, 1], [2]]),  # {10, 9}: 5% padding; adding 2 would pad 30%
        ([10, 9, 2], 1.0, [[0, 1, 2]]),
    ],
)
def test_length_groups(lengths, max_padding, groups):
    assert _length_groups(lengths, max_padding) == groups


def test_tiny_catalog_wider_beam(model):
    """Beam 10 over 3 items: the beam shrinks to the valid paths and returns each item once."""
    trie = ItemTrie.from_token_ids(np.array([[11, 20], [11, 21], [12, 20]]))
    ids, mask = left_padded([5, 8])
    items, scores = constrained_beam_search(model, ids, mask, trie, num_beams=10, num_return=3)
    for row, score in zip(items, scores):
        assert sorted(row.tolist()) == [0, 1, 2]
        assert torch.isfinite(score).all()


def test_bad_arguments_raise(model, trie):
    ids, mask = left_padded([4, 6])
    with pytest.raises(ValueError, match="num_return"):
        constrained_beam_search(model, ids, mask, trie, num_beams=4, num_return=5)
    with pytest.raises(ValueError, match="exceeds"):
        small = ItemTrie.from_token_ids(np.array([[11, 20], [12, 20]]))
        constrained_beam_search(model, ids, mask, small, num_beams=4, num_return=3)
    with pytest.raises(ValueError, match="left-padded"):
        constrained_beam_search(model, ids, mask.flip(1), trie, num_beams=4, num_return=4)


def test_other_architecture_matches_hf_generate(trie):
    """Not Llama-specific: a tiny GPT-2 (learned absolute positions) agrees with the HF path too."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=0)
    gpt2 = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        gpt2.transformer.wte.weight.mul_(20)
    ids, mask = left_padded([7, 3, 10])
    ours, our_scores = constrained_beam_search(gpt2, ids, mask, trie, num_beams=6, num_return=6)
    ref, ref_scores = hf_constrained_generate(gpt2, ids, mask, trie, num_beams=6, num_return=6)
    assert torch.equal(ours, ref)
    torch.testing.assert_close(our_scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_peft_wrapped_model_decodes_like_its_base(model, trie):
    """A fresh LoRA adapter is a no-op, so the wrapped model must return the base model's lists."""
    import copy

    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    ).eval()
    ids, mask = left_padded([5, 9])
    base_items, base_scores = constrained_beam_search(model, ids, mask, trie, num_beams=6, num_return=6)
    items, scores = constrained_beam_search(wrapped, ids, mask, trie, num_beams=6, num_return=6)
    assert torch.equal(items, base_items)
    torch.testing.assert_close(scores, base_scores)


def test_eager_attention_matches_hf_generate(model, trie):
    """The tree-attention steps pass an additive 4D mask, which eager attention must honour like SDPA."""
    import copy

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    ids, mask = left_padded([7, 12, 4])
    ours, our_scores = constrained_beam_search(eager, ids, mask, trie, num_beams=8, num_return=8)
    ref, ref_scores = hf_constrained_generate(eager, ids, mask, trie, num_beams=8, num_return=8)
    assert torch.equal(ours, ref)
    torch.testing.assert_close(our_scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_sliding_window_cache_matches_hf_generate(trie):
    """Sliding-window layers cannot take the tree mask; the per-beam cache path must agree with HF too."""
    from transformers import MistralConfig, MistralForCausalLM

    mistral = tiny_model(MistralForCausalLM, MistralConfig(**TINY, sliding_window=6))
    ids, mask = left_padded([9, 4, 12])
    ours, our_scores = constrained_beam_search(mistral, ids, mask, trie, num_beams=6, num_return=6)
    ref, ref_scores = hf_constrained_generate(mistral, ids, mask, trie, num_beams=6, num_return=6)
    assert torch.equal(ours, ref)
    torch.testing.assert_close(our_scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_restricted_scores_normalise_over_the_given_tokens_only(model, trie):
    """With ``score_ids`` each step's softmax runs over those tokens: exhaustive check on a full beam."""
    ids, mask = left_padded([6])
    score_ids = torch.arange(10, 40)  # every item token (10..35) and a few others
    n = trie.num_items
    items, scores = constrained_beam_search(
        model, ids, mask, trie, num_beams=n + 16, num_return=n, score_ids=score_ids
    )
    paths = torch.as_tensor(trie.token_ids)
    seqs = torch.cat([ids.expand(n, -1), paths], dim=1)
    with torch.no_grad():
        logits = model(seqs).logits.float()[:, ids.shape[1] - 1 : -1]
    local = torch.log_softmax(logits[..., score_ids], dim=-1)
    exact = local.gather(-1, (paths - 10).unsqueeze(-1)).squeeze(-1).sum(-1)
    assert torch.equal(items[0], exact.argsort(descending=True))
    torch.testing.assert_close(scores[0], exact[items[0]], atol=1e-4, rtol=1e-4)
    assert (scores[0] > exhaustive_scores(model, ids, trie)[items[0]]).all()  # a smaller softmax: higher


def test_blocked_nodes_known_answer():
    # items: 0 = (1, 5), 1 = (1, 6), 2 = (2, 5); node ids per depth follow sorted (parent, token) order
    trie = ItemTrie.from_token_ids(np.array([[1, 5], [1, 6], [2, 5]]))
    depth1, depth2 = trie.blocked_nodes([[0], [0, 1], [2], []])
    assert depth1.tolist() == [[False, False], [True, False], [False, True], [False, False]]
    assert depth2.tolist() == [
        [True, False, False],
        [True, True, False],
        [False, False, True],
        [False, False, False],
    ]
    with pytest.raises(ValueError, match="outside"):
        trie.blocked_nodes([[3]])


def test_excluded_items_never_return_and_the_rest_keep_their_order(model, trie):
    """Masked search == the exhaustive ranking with the excluded items struck out."""
    ids, mask = left_padded([6, 9])
    n = trie.num_items
    exact = [exhaustive_scores(model, ids[b : b + 1, mask[b].bool()], trie) for b in range(2)]
    # exclude each prompt's own top 5 and a few others, so the masked list must differ from the plain one
    exclude = [exact[b].argsort(descending=True)[:5].tolist() + [b, 40 + b] for b in range(2)]
    items, scores = constrained_beam_search(
        model, ids, mask, trie, num_beams=n + 16, num_return=20, exclude=exclude
    )
    for b in range(2):
        allowed = [i for i in exact[b].argsort(descending=True).tolist() if i not in exclude[b]]
        assert items[b].tolist() == allowed[:20]
        torch.testing.assert_close(scores[b], exact[b][items[b]], atol=1e-4, rtol=1e-4)
    narrow, _ = constrained_beam_search(model, ids, mask, trie, num_beams=10, num_return=10, exclude=exclude)
    for b in range(2):
        assert not set(narrow[b].tolist()) & set(exclude[b]) and len(set(narrow[b].tolist())) == 10
    with pytest.raises(ValueError, match="items left"):
        constrained_beam_search(model, ids, mask, trie, num_beams=n, num_return=n, exclude=exclude)
    with pytest.raises(ValueError, match="rows"):
        constrained_beam_search(model, ids, mask, trie, num_beams=4, exclude=exclude[:1])
