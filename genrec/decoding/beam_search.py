"""Trie-constrained beam search over item token paths for any Hugging Face causal LM.

:func:`constrained_beam_search` encodes each prompt once and reads each step's allowed tokens from the
trie's dense per-depth tables (one gather, no per-beam Python callback). Each step feeds all of a prompt's
beams as extra tokens of that prompt's single cache row, with a 4D mask that lets each token see only the
prompt and its own ancestors (tree attention), so the prompt's KV cache is never copied per beam. Models
whose attention cannot take such a mask (sliding-window layers, flash/flex kernels) copy the prompt's
cache once per beam instead. :func:`hf_constrained_generate` is the reference path LC-Rec and MiniOneRec
use — ``model.generate`` with ``prefix_allowed_tokens_fn`` — which encodes the prompt once per beam; the
tests check that both return the same lists.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache, GenerationConfig, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from genrec.decoding.trie import ItemTrie


class _BeamLayer(DynamicLayer):
    """One layer's KV cache for beams that share their prompt, preallocated for the item tokens.

    Appending a token is a write instead of a concatenation, and reordering beams among the rows of the
    same prompt moves only the generated columns: the prompt columns of those rows are identical.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, repeats: int, extra: int):
        super().__init__()
        length = keys.shape[-2]
        self.keys = self._expand(keys, repeats, extra)
        self.values = self._expand(values, repeats, extra)
        self.prompt_length = self.length = length
        self.device, self.is_initialized = keys.device, True

    @staticmethod
    def _expand(states: torch.Tensor, repeats: int, extra: int) -> torch.Tensor:
        rows, heads, length, dim = states.shape
        out = states.new_empty(rows, repeats, heads, length + extra, dim)
        out[:, :, :, :length] = states.unsqueeze(1)
        return out.view(rows * repeats, heads, length + extra, dim)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """``beam_idx`` must map every row to a row of the same prompt (true within one user's beams)."""
        if len(beam_idx) != self.keys.shape[0]:  # the beam count changed: rebuild every row
            self.keys, self.values = self.keys[beam_idx], self.values[beam_idx]
            return
        generated = slice(self.prompt_length, self.length)
        self.keys[:, :, generated] = self.keys[beam_idx, :, generated]
        self.values[:, :, generated] = self.values[beam_idx, :, generated]


def _expand_cache(cache: DynamicCache, repeats: int, extra: int) -> None:
    """Copy the prompt's KV once per beam; plain dynamic layers switch to :class:`_BeamLayer`."""
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_BeamLayer(layer.keys, layer.values, repeats, extra) for layer in cache.layers]
    else:  # sliding-window or other layer types keep their own semantics
        cache.batch_repeat_interleave(repeats)


def _supports_tree_attention(model: PreTrainedModel, cache: DynamicCache) -> bool:
    """Whether the model takes a custom additive 4D mask (eager/SDPA) over a plain full-attention cache."""
    attention = getattr(model.config, "_attn_implementation", None)
    return attention in ("sdpa", "eager") and all(type(layer) is DynamicLayer for layer in cache.layers)


def _forward_params(model: PreTrainedModel) -> set[str]:
    """Named ``forward`` arguments of the model, looking through PEFT wrappers (which take ``**kwargs``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def _cache_kwargs(params: set[str], cache: DynamicCache) -> dict:
    """Pass the KV cache under the name ``forward`` takes (``past_key_values`` is deprecated in 5.x)."""
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _length_groups(lengths: list[int], max_padding: float) -> list[list[int]]:
    """Rows grouped by prompt length (longest first) so each group's padded share is <= ``max_padding``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        # rows arrive longest first, so the group's width is its first row's length
        if (
            group
            and 1 - (sum(lengths[j] for j in group) + lengths[i]) / (lengths[group[0]] * (len(group) + 1))
            <= max_padding
        ):
            group.append(i)
        else:
            groups.append([i])
    return groups


def _prefill(
    model: PreTrainedModel,
    params: set[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_padding: float,
) -> tuple[torch.Tensor, DynamicCache]:
    """Encode the prompts once: last-position logits ``(B, V)`` and a left-padded ``(B, ..., T, ...)`` cache.

    Prompts of very different lengths are encoded in length groups, each trimmed to its own width, and
    their KV states are placed into one left-padded cache; padded slots stay masked in every later step.
    Caches with non-plain layers (sliding windows) take the single padded batch.
    """
    trim = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # only the last position matters

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        cache = DynamicCache(config=model.config)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            **_cache_kwargs(params, cache),
            **trim,
        )
        return out.logits[:, -1], cache

    lengths = attention_mask.sum(-1).tolist()
    groups = _length_groups(lengths, max_padding)
    plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
    if len(groups) == 1 or not plain:
        return encode(input_ids, attention_mask)
    batch, width = input_ids.shape

    def padded(states: torch.Tensor) -> torch.Tensor:  # (batch, heads, width, dim) zeros
        return states.new_zeros(batch, states.shape[1], width, states.shape[-1])

    logits: torch.Tensor | None = None
    full: list[tuple[torch.Tensor, torch.Tensor]] = []
    for rows in groups:
        group_width = max(lengths[i] for i in rows)
        index = torch.tensor(rows, device=input_ids.device)
        group_logits, cache = encode(input_ids[index, -group_width:], attention_mask[index, -group_width:])
        if logits is None:  # allocate once the shapes are known
            logits = group_logits.new_empty(batch, group_logits.shape[-1])
            full = [(padded(layer.keys), padded(layer.values)) for layer in cache.layers]
        logits[index] = group_logits
        for (keys, values), layer in zip(full, cache.layers):
            keys[index, :, width - group_width :] = layer.keys
            values[index, :, width - group_width :] = layer.values
    merged = DynamicCache(config=model.config)
    for layer_idx, (keys, values) in enumerate(full):
        merged.update(keys, values, layer_idx)
    return logits, merged


def _check_widths(
    trie: ItemTrie, num_beams: int, num_return: int, exclude: Sequence[Sequence[int]] | None = None
) -> None:
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if not 1 <= num_return <= num_beams:
        raise ValueError(f"num_return must be in [1, num_beams={num_beams}], got {num_return}")
    if num_return > trie.num_items:
        raise ValueError(f"num_return={num_return} exceeds the {trie.num_items} items in the trie")
    for u, items in enumerate(exclude or []):
        left = trie.num_items - len(set(int(i) for i in items))
        if num_return > left:
            raise ValueError(
                f"num_return={num_return} exceeds the {left} items left for prompt {u} after exclusion"
            )


def _log_probs(logits: torch.Tensor, score_ids: torch.Tensor | None) -> torch.Tensor:
    """Log-softmax over the whole vocabulary, or over ``score_ids`` only (-inf elsewhere)."""
    logits = logits.float()
    if score_ids is None:
        return torch.log_softmax(logits, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    out[..., score_ids] = torch.log_softmax(logits[..., score_ids], dim=-1)
    return out


@torch.no_grad()
def constrained_beam_search(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: ItemTrie,
    num_beams: int = 10,
    num_return: int | None = None,
    max_padding: float = 0.05,
    score_ids: torch.Tensor | None = None,
    exclude: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``num_return`` items per prompt by summed token log-probability, best first.

    ``input_ids``/``attention_mask`` are ``(B, T)`` left-padded prompts. Returns ``(item_indices, scores)``,
    both ``(B, num_return)``; every index is a catalog item and no item repeats within a row. Beams whose
    prefix has fewer valid continuations than ``num_beams`` simply keep fewer live beams, so a beam wider
    than the catalog is fine as long as ``num_return`` does not exceed the number of items.
    The prompts are encoded in groups of similar length so that at most ``max_padding`` of each group's
    prefill tokens are padding (1.0 = one padded batch, as before).

    ``score_ids``: normalise each step's softmax over these token ids only, the rule a model trained with
    the SID-restricted loss was trained under (None = the whole vocabulary). ``exclude[b]``: item indices
    prompt ``b`` must not get (e.g. its history); their subtrees are masked inside the search, so all
    ``num_return`` items are new.
    """
    num_return = num_beams if num_return is None else num_return
    _check_widths(trie, num_beams, num_return, exclude)
    if exclude is not None and len(exclude) != input_ids.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} rows for {input_ids.shape[0]} prompts")
    if input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ"
        )
    if (attention_mask[:, -1] == 0).any():
        raise ValueError("prompts must be left-padded (attention_mask[:, -1] must be 1)")
    device = input_ids.device
    trie = trie.to(device)
    batch = input_ids.shape[0]
    attention_mask = attention_mask.long()
    prompt_len = attention_mask.sum(-1)  # real tokens per prompt; generated token d sits at position len + d
    params = _forward_params(model)
    last_logits, cache = _prefill(model, params, input_ids, attention_mask, max_padding)
    cache_kwargs = _cache_kwargs(params, cache)
    score_ids = None if score_ids is None else torch.as_tensor(score_ids, device=device)
    blocked = trie.blocked_nodes(exclude, device) if exclude is not None else None
    log_probs = _log_probs(last_logits, score_ids)  # (B * beams, V)
    vocab = log_probs.shape[-1]
    tree = _supports_tree_attention(model, cache)
    mask_dtype = model.dtype
    beams = 1
    node = torch.zeros(batch, 1, dtype=torch.long, device=device)
    score = torch.zeros(batch, 1, device=device)
    path = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # cache column of each beam's tokens
    kv_len = input_ids.shape[1]
    for d in range(trie.depth):
        cand_tokens = trie.child_tokens[d][node]  # (B, beams, C)
        cand_nodes = trie.child_nodes[d][node]
        cand_lp = log_probs.view(batch, beams, vocab).gather(-1, cand_tokens.clamp(min=0))
        dead = cand_nodes < 0
        if blocked is not None:
            flat_nodes = cand_nodes.clamp(min=0).view(batch, -1)
            dead = dead | blocked[d].gather(1, flat_nodes).view_as(cand_nodes)
        total = (score.unsqueeze(-1) + cand_lp).masked_fill(dead, float("-inf"))
        width = cand_tokens.shape[-1]
        new_beams = min(num_beams, beams * width)
        score, flat = total.view(batch, -1).topk(new_beams, dim=-1)
        parent = flat // width
        # Dead beams (fewer valid paths than beams) carry -inf with placeholder token/node 0; they never win.
        token = cand_tokens.view(batch, -1).gather(1, flat).clamp(min=0)
        node = cand_nodes.view(batch, -1).gather(1, flat).clamp(min=0)
        if d == trie.depth - 1:
            break
        position_ids = (prompt_len + d).unsqueeze(1).expand(batch, new_beams)
        if tree:
            # Tree attention: every beam's token is appended to its prompt's single cache row, and a 4D
            # mask lets it see only the prompt and its own ancestors, so no KV is ever copied per beam.
            path = torch.cat(
                [
                    path.gather(1, parent.unsqueeze(-1).expand(-1, -1, d)),
                    (kv_len + torch.arange(new_beams, device=device)).view(1, -1, 1).expand(batch, -1, 1),
                ],
                dim=-1,
            )
            kv_len += new_beams
            seen = torch.zeros(batch, new_beams, kv_len, dtype=torch.bool, device=device)
            seen[..., : input_ids.shape[1]] = attention_mask.bool().unsqueeze(1)
            seen.scatter_(-1, path, True)
            step_mask = torch.zeros(seen.shape, dtype=mask_dtype, device=device)
            step_mask = step_mask.masked_fill(~seen, torch.finfo(mask_dtype).min).unsqueeze(1)
            step_ids = token
        else:
            rows = (parent + torch.arange(batch, device=device).unsqueeze(1) * beams).view(-1)
            if beams == 1:
                _expand_cache(cache, new_beams, trie.depth - 1)  # the prompt is encoded once, copied per beam
            else:
                cache.reorder_cache(rows)
            step_mask = torch.cat(
                [
                    attention_mask.repeat_interleave(new_beams, 0),
                    torch.ones(batch * new_beams, d + 1, dtype=torch.long, device=device),
                ],
                dim=1,
            )
            step_ids, position_ids = token.view(-1, 1), position_ids.reshape(-1, 1)
        beams = new_beams
        out = model(
            input_ids=step_ids,
            attention_mask=step_mask,
            position_ids=position_ids,
            use_cache=True,
            **cache_kwargs,
        )
        log_probs = _log_probs(out.logits, score_ids)
    items = trie.leaf_items[node[:, :num_return]]
    return items, score[:, :num_return]


@torch.no_grad()
def hf_constrained_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: ItemTrie,
    num_beams: int = 10,
    num_return: int | None = None,
    pad_token_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference decoder: ``model.generate`` with ``prefix_allowed_tokens_fn`` (the LC-Rec/MiniOneRec way).

    Same inputs and outputs as :func:`constrained_beam_search`. ``length_penalty=0`` makes its scores plain
    summed log-probs; every path has the same length, so nothing else differs. Indices are -1 for any
    returned path that is not an item (possible only when beams outnumber valid paths).
    """
    num_return = num_beams if num_return is None else num_return
    _check_widths(trie, num_beams, num_return)
    prompt_width = input_ids.shape[1]

    def allowed(_batch_id: int, sequence: torch.Tensor) -> list[int]:
        return trie.allowed_tokens(sequence[prompt_width:].tolist())

    config = GenerationConfig(
        max_new_tokens=trie.depth,
        num_beams=num_beams,
        num_return_sequences=num_return,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=True,
        pad_token_id=pad_token_id,
        eos_token_id=None,
        bos_token_id=None,
        output_scores=True,
        return_dict_in_generate=True,
    )
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        generation_config=config,
        prefix_allowed_tokens_fn=allowed,
    )
    items = torch.from_numpy(trie.lookup(out.sequences[:, prompt_width:])).view(-1, num_return)
    return items, out.sequences_scores.view(-1, num_return).float()
