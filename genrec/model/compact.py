"""A compact from-scratch Llama over semantic-ID tokens (TIGER-sized), trained on whole user sequences.

The backbone is a real ``LlamaForCausalLM`` with a small ``PreTrainedTokenizerFast`` whose vocabulary is the
SID tokens plus a few specials, so it saves and loads with ``save_pretrained`` and decodes with the same
:func:`genrec.decoding.constrained_beam_search` as the LLM recommenders.

Training puts one sample per user: ``<bos>`` followed by the concatenated SID tokens of the (last
``max_items``) training items, with loss at every token. Causal attention makes each item's tokens a
prediction from everything before it, so one pass covers every sliding window of the sequence at once.

Optionally (``item_head_weight > 0``) the state where each item starts also scores every catalog item at
once, a full-softmax objective beside next-token prediction; decoding then re-ranks the beam's items by it
(BARGE's re-ranking of paths with the state before the item).
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from torch.utils.data import Sampler
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from genrec.data.dataset import SequenceDataset
from genrec.decoding import ItemTrie, constrained_beam_search, merge_beams
from genrec.errors import CheckpointMismatchError
from genrec.sid.spec import SemanticIDSpec
from genrec.utils import (
    atomic_directory,
    atomic_write_json,
    configure_threads,
    get_logger,
    read_json,
    seed_everything,
)
from genrec.utils.checkpoint import TRAINER_STATE, checkpoint_steps, latest_checkpoint

logger = get_logger(__name__)

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
_META = "genrec_compact.json"
_ITEM_TOKENS = "item_token_ids.safetensors"


@dataclass
class CompactConfig:
    """Backbone size. The default (~0.8M non-embedding parameters) trains on all of Beauty on a CPU."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_size: int = 512
    attention_dropout: float = 0.1
    # Llama has no other dropout; these add GPT-2's: on the token embeddings, and on each attention and MLP
    # branch before it joins the residual stream (training only; decoding is unchanged)
    embedding_dropout: float = 0.0
    residual_dropout: float = 0.0
    max_items: int = 20  # history items kept (the most recent ones)
    # weight of the item-level loss beside the token loss; 0 = no item head (see SIDLlamaForCausalLM)
    item_head_weight: float = 0.0

    def llama_config(
        self, vocab_size: int, tokens_per_item: int, tokenizer: PreTrainedTokenizerFast, num_items: int
    ) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads or self.num_heads,
            attention_dropout=self.attention_dropout,
            max_position_embeddings=1 + (self.max_items + 1) * tokens_per_item,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            num_items=num_items if self.item_head_weight else 0,
            tokens_per_item=tokens_per_item,
            item_head_weight=self.item_head_weight,
        )


class SIDLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` plus, when ``config.num_items``, an item head over the whole catalog.

    Item ``i``'s vector is the sum of its SID tokens' (tied) embeddings plus a learned residual of its own
    (zero at first, so an item never trained on keeps a vector composed from its codes); the query is a
    projection of the hidden state where the item starts. Why: beam search commits to an item's first
    code before it sees the rest, and an error there cannot be undone (BARGE: level-3 accuracy 77% after a
    right prefix, 0.6% after a wrong one); an item-level score of the beam's finished items, as SASRec
    scores items, re-ranks them with the whole item in view.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        num_items = getattr(config, "num_items", 0)
        if num_items:
            width = config.tokens_per_item
            self.register_buffer("item_token_ids", torch.zeros(num_items, width, dtype=torch.long))
            self.item_query = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
            self.item_residual = nn.Embedding(num_items, config.hidden_size)
            nn.init.zeros_(self.item_residual.weight)

    @property
    def has_item_head(self) -> bool:
        return bool(getattr(self.config, "num_items", 0))

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores ``(..., num_items)`` of every item from hidden states ``(..., hidden_size)``."""
        # the embedding table itself: the embedding-dropout hook is for the token stream, not item vectors
        items = self.model.embed_tokens.weight[self.item_token_ids].sum(1) + self.item_residual.weight
        return self.item_query(hidden) @ items.T

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        labels: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        item_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """As Llama's; in training with an item head, ``item_labels`` ``(B, n)`` (item indices, -100 for
        none) are the items the right-padded rows hold, and their item loss joins the token loss."""
        if item_labels is None or not self.has_item_head:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                labels=labels,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        # item j starts after <bos> + j items: the state at position j * tokens_per_item predicts it
        starts = hidden[:, :: self.config.tokens_per_item][:, : item_labels.shape[1]]
        item_loss = F.cross_entropy(self.item_logits(starts).flatten(0, 1), item_labels.flatten())
        return CausalLMOutputWithPast(loss=loss + self.config.item_head_weight * item_loss, logits=logits)

    @torch.no_grad()
    def item_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Log-softmax over every item ``(B, num_items)`` for left-padded prompts, from their last state."""
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions)
        return torch.log_softmax(self.item_logits(out.last_hidden_state[:, -1]).float(), -1)


def add_dropout(model: LlamaForCausalLM, config: CompactConfig) -> None:
    """Registers ``config``'s embedding and residual dropout as forward hooks (active in train mode only)."""

    def hook(p: float) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        return lambda module, args, output: F.dropout(output, p, module.training)

    if config.embedding_dropout:
        model.model.embed_tokens.register_forward_hook(hook(config.embedding_dropout))
    if config.residual_dropout:
        for layer in model.model.layers:
            layer.self_attn.o_proj.register_forward_hook(hook(config.residual_dropout))
            layer.mlp.down_proj.register_forward_hook(hook(config.residual_dropout))


def build_sid_tokenizer(sid_tokens: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the specials plus ``sid_tokens`` (e.g. ``<a_12>``), split on whitespace."""
    vocab: dict[str, int] = {}
    for tok in [*SPECIAL_TOKENS.values(), *sid_tokens]:
        if tok in vocab:
            raise ValueError(f"duplicate token {tok!r} in the SID vocabulary")
        vocab[tok] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", **SPECIAL_TOKENS)


class CompactRecommender:
    """Compact Llama + SID tokenizer + the item→token-id table that defines the decoding trie."""

    def __init__(
        self,
        model: SIDLlamaForCausalLM,
        tokenizer: PreTrainedTokenizerFast,
        item_token_ids: np.ndarray,
        config: CompactConfig,
        catalog_fingerprint: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.item_token_ids = np.asarray(item_token_ids, dtype=np.int64)
        self.config = config
        head_tokens = model.item_token_ids.cpu().numpy() if model.has_item_head else self.item_token_ids
        if not np.array_equal(head_tokens, self.item_token_ids):
            raise CheckpointMismatchError("the model's item head holds other item tokens than the item table")
        add_dropout(model, config)
        self.catalog_fingerprint = catalog_fingerprint
        self.trie = ItemTrie.from_token_ids(self.item_token_ids)

    @classmethod
    def from_item_tokens(
        cls,
        item_tokens: Sequence[Sequence[str]],
        config: CompactConfig | None = None,
        catalog_fingerprint: str | None = None,
        seed: int = 0,
    ) -> CompactRecommender:
        """A fresh model for items whose SID tokens are ``item_tokens[i]`` (all of the same length).

        From :class:`genrec.sid.SemanticIDs`: ``[sid.item_tokens(i) for i in range(len(sid.codes))]``.
        """
        config = config or CompactConfig()
        lengths = {len(t) for t in item_tokens}
        if len(lengths) != 1:
            raise ValueError(f"every item needs the same number of SID tokens, got lengths {sorted(lengths)}")
        vocab = sorted({tok for toks in item_tokens for tok in toks})
        tokenizer = build_sid_tokenizer(vocab)
        table = np.array([tokenizer.convert_tokens_to_ids(list(t)) for t in item_tokens], dtype=np.int64)
        torch.manual_seed(seed)
        model = SIDLlamaForCausalLM(
            config.llama_config(len(tokenizer), table.shape[1], tokenizer, len(table))
        )
        if model.has_item_head:
            model.item_token_ids.copy_(torch.from_numpy(table))
        return cls(model, tokenizer, table, config, catalog_fingerprint)

    @property
    def tokens_per_item(self) -> int:
        return self.item_token_ids.shape[1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- inputs ----------------------------------------------------------------------------------
    def sequence_ids(self, items: np.ndarray) -> list[int]:
        """``<bos>`` + SID tokens of the last ``max_items`` items."""
        items = np.asarray(items, dtype=np.int64)[-self.config.max_items :]
        return [self.tokenizer.bos_token_id, *self.item_token_ids[items].reshape(-1).tolist()]

    def training_features(self, items: np.ndarray) -> dict[str, list[int]]:
        """One training sample: :meth:`sequence_ids` and the items they hold (the item head's labels)."""
        return {
            "input_ids": self.sequence_ids(items),
            "item_labels": np.asarray(items, dtype=np.int64)[-self.config.max_items :].tolist(),
        }

    def encode_histories(self, histories: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(input_ids, attention_mask)`` prompts for decoding.

        An empty history is the cold-start prompt ``<bos>`` alone: training puts a loss on every user's
        first item right after ``<bos>``, so from there the model predicts what users start with.
        """
        seqs = [self.sequence_ids(h) for h in histories]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        return ids, mask

    # -- decoding --------------------------------------------------------------------------------
    @torch.no_grad()
    def beam_candidates(
        self,
        histories: Sequence[np.ndarray],
        num_beams: int,
        num_return: int,
        exclude_history: bool = False,
        item_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One batch's constrained beam search: items and beam scores ``(B, num_return)``, best first, and
        with ``item_scores`` the item head's log-probabilities ``(B, num_items)`` (None without a head)."""
        self.model.eval()
        device = self.model.device
        ids, mask = self.encode_histories(histories)
        ids, mask = ids.to(device), mask.to(device)
        top, score = constrained_beam_search(
            self.model,
            ids,
            mask,
            self.trie,
            num_beams=num_beams,
            num_return=num_return,
            exclude=histories if exclude_history else None,
        )
        head = self.model.item_log_probs(ids, mask) if item_scores and self.model.has_item_head else None
        return top, score, head

    def recommend(
        self,
        histories: Sequence[np.ndarray],
        k: int = 10,
        num_beams: int = 20,
        batch_size: int = 64,
        progress: bool = False,
        exclude_history: bool = False,
        item_weight: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per history by constrained beam search: ``(items, scores)``, each (U, k).

        ``exclude_history=True`` keeps each user's own items out of their list (masked in the search).
        With an item head, the ``num_beams`` items the search finds are re-ranked by their beam
        log-probability plus ``item_weight`` times the head's log-probability (1 = the product of the two
        models' probabilities; 0 = the beam's order).
        """
        return recommend_merged(
            [self], histories, k, num_beams, batch_size, progress, exclude_history, item_weight
        )

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """HF model + tokenizer, item token table (safetensors), config and catalog fingerprint."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.save_item_table(directory)

    def save_item_table(self, directory: str | Path) -> None:
        """What makes a saved HF model + tokenizer a compact recommender: the item table and the config.

        Separate so that the trainer's checkpoints (model and tokenizer written by transformers) are
        loadable with :meth:`from_pretrained` too.
        """
        directory = Path(directory)
        save_file({"item_token_ids": torch.from_numpy(self.item_token_ids)}, str(directory / _ITEM_TOKENS))
        atomic_write_json(
            directory / _META,
            {"compact": asdict(self.config), "catalog_fingerprint": self.catalog_fingerprint},
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, catalog=None) -> CompactRecommender:
        """Load a saved model; with ``catalog``, raise :class:`CheckpointMismatchError` on a mismatch."""
        directory = Path(directory)
        meta_path = directory / _META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: not a compact recommender folder")
        meta = read_json(meta_path)
        known = {f.name for f in fields(CompactConfig)}
        unknown = set(meta["compact"]) - known
        if unknown:
            raise CheckpointMismatchError(f"{meta_path}: unknown compact config fields {sorted(unknown)}")
        fingerprint = meta.get("catalog_fingerprint")
        if catalog is not None and fingerprint is not None and catalog.fingerprint() != fingerprint:
            raise CheckpointMismatchError(
                f"{meta_path}: saved for catalog {fingerprint}, got catalog {catalog.fingerprint()}"
            )
        table = load_file(str(directory / _ITEM_TOKENS))["item_token_ids"].numpy()
        if catalog is not None and len(catalog) != len(table):
            raise CheckpointMismatchError(
                f"{directory}: {len(table)} items saved, catalog has {len(catalog)}"
            )
        model = SIDLlamaForCausalLM.from_pretrained(directory)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
        return cls(model, tokenizer, table, CompactConfig(**meta["compact"]), fingerprint)


@torch.no_grad()
def recommend_merged(
    channels: Sequence[CompactRecommender],
    histories: Sequence[np.ndarray],
    k: int = 10,
    num_beams: int = 20,
    batch_size: int = 64,
    progress: bool = False,
    exclude_history: bool = False,
    item_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items per history from one or more models' beams, merged by :func:`merge_beams`.

    Each model searches ``num_beams`` items with its own codes; with item heads (and ``item_weight`` != 0)
    every item of the union is scored by the heads too. One model without re-ranking returns its beam's
    top ``k`` as they come. Histories are decoded in order of length so that each batch pads (and copies
    its KV cache across beams) for about its own length rather than the longest history's.
    """
    rerank = item_weight != 0 and channels[0].model.has_item_head
    wide = rerank or len(channels) > 1
    if wide and num_beams < k:
        raise ValueError(f"re-ranking the beam needs num_beams >= k, got {num_beams} < {k}")
    longest = max(c.config.max_items for c in channels)
    order = np.argsort([min(len(h), longest) for h in histories], kind="stable")
    items = np.empty((len(histories), k), dtype=np.int64)
    scores = np.empty((len(histories), k), dtype=np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="decode", disable=not progress, leave=False):
        rows = order[start : start + batch_size]
        batch = [histories[i] for i in rows]
        found = [
            c.beam_candidates(batch, num_beams, num_beams if wide else k, exclude_history, rerank)
            for c in channels
        ]
        top, score, heads = ([f[j] for f in found] for j in range(3))
        if wide:
            top, score = merge_beams(top, score, heads if rerank else None, item_weight, k)
        else:
            top, score = top[0], score[0]
        items[rows] = top.cpu().numpy()
        scores[rows] = score.cpu().numpy()
    return items, scores


# -- training ----------------------------------------------------------------------------------------


@dataclass
class CompactTrainingConfig:
    """Whole-sequence training with validation-based early stopping. YAML recipes map onto these fields."""

    output_dir: str = "runs/compact"
    compact: CompactConfig = field(default_factory=CompactConfig)
    sid: SemanticIDSpec = field(default_factory=SemanticIDSpec)  # how the recipe's script builds the IDs
    epochs: int = 30
    batch_size: int = 128  # users per step
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100  # linear from 0 (transformers' schedule: the first step has lr 0)
    min_lr_ratio: float = 0.1  # the cosine decay ends at learning_rate * min_lr_ratio
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0  # transformers' label_smoothing_factor on every SID-token target
    eval_users: int = 2000  # validation users sampled (fixed) for early stopping; 0 = all
    # draws them apart from ``seed``: models trained from other seeds (channels) hold out the same users
    eval_seed: int = 0
    # Leave each sampled validation user's last training item out of training, so that validation
    # histories end, as test histories do, in an item the model never trained on in that context. Without
    # it validation histories are training sequences, and validation rewards memorising them: on Beauty
    # compact's validation NDCG@10 overstated test 1.71x, SASRec's 1.29x.
    eval_unseen_last: bool = False
    # Every training item a target: a history longer than compact.max_items is cut, from its end back, into
    # windows of max_items items, each a training sample. Without it only the last max_items train (on
    # Beauty 4% of users are longer, and 9.9% of training interactions were never a target).
    train_windows: bool = False
    eval_beams: int = 20
    eval_batch_size: int = 64
    metric: str = "ndcg@10"
    patience: int = 3  # epochs without improvement before stopping
    max_minutes: float | None = None  # wall-clock budget for training (checked after each epoch)
    seed: int = 0
    num_threads: int | None = None
    resume: bool = True
    # Further SID channels (genrec.model.channels): each entry overrides this config for one more model,
    # e.g. {sid: {seed: 1}} for codes from another k-means draw; their beams are merged at decoding.
    channels: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.channels, list) or not all(isinstance(c, dict) for c in self.channels):
            raise ValueError(f"channels must be a list of override mappings, got {self.channels!r}")
        if self.label_smoothing and isinstance(self.compact, CompactConfig) and self.compact.item_head_weight:
            raise ValueError(
                "label_smoothing and compact.item_head_weight cannot be combined: transformers' Trainer "
                "smooths the token loss itself and would drop the item head's loss"
            )

    def with_overrides(self, overrides: dict[str, Any], where: str = "overrides") -> CompactTrainingConfig:
        """This config with ``overrides`` nested as in the YAML (``{compact: {hidden_size: 384}}``), checked
        as it is built; unknown fields are named with their path under ``where``."""
        return _override(self, overrides, where)

    @classmethod
    def from_dict(cls, values: dict) -> CompactTrainingConfig:
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config fields {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(values.get("compact"), dict):
            values["compact"] = CompactConfig(**values["compact"])
        if isinstance(values.get("sid"), dict):
            values["sid"] = SemanticIDSpec(**values["sid"])
        return cls(**values)


def _override(config: Any, overrides: dict[str, Any], where: str) -> Any:
    """The dataclass ``config`` with ``overrides``; a field that is itself a dataclass takes a mapping."""
    known = {f.name for f in fields(config)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"{where}: unknown field {key!r}; known: {sorted(known)}")
        current = getattr(config, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key} is a section: give it a mapping, not {value!r}")
            value = _override(current, value, f"{where}.{key}")
        changes[key] = value
    return replace(config, **changes)


def _pad(features: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """The trainer's collator: right-padded batch, padding masked out of attention and loss.

    Right, unlike the tokenizer's left padding for decoding: the model numbers positions by column, so
    right padding starts every user at position 0 whatever the batch's longest sequence.
    """
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    item_labels = torch.full((len(features), max(len(f["item_labels"]) for f in features)), -100)
    for i, f in enumerate(features):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[i, : len(f["input_ids"])] = 1
        item_labels[i, : len(f["item_labels"])] = torch.tensor(f["item_labels"], dtype=torch.long)
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "item_labels": item_labels}


def _batch(rec: CompactRecommender, sequences: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """The training batch of users with these item ``sequences``, as the trainer sees it."""
    return _pad([rec.training_features(s) for s in sequences], rec.tokenizer.pad_token_id)


class LengthBucketSampler(Sampler[int]):
    """Users in shuffled batches of similar length, reshuffled each epoch from ``seed`` and the epoch.

    Pools of 50 batches of users are sorted by length and cut into batches; the full batches are shuffled
    and the one short batch (if any) comes last, so the trainer's DataLoader, cutting this stream into
    ``batch_size`` slices, gets exactly these batches. Why not transformers' ``group_by_length``: it pools
    at most a quarter of the data, and on small datasets that pads far more (1,024 users in batches of
    128: 48% padding against 9% here, 1.6x slower steps); on Beauty the two pad alike (3% and 2%).
    The seed is per epoch (``set_epoch``), so a resumed run draws the batches an uninterrupted one did.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed * 1000 + self.epoch)
        order = rng.permutation(len(self.lengths))
        pool = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        return iter(np.concatenate([full[i] for i in rng.permutation(len(full))] + short).tolist())


def evaluate_compact(
    rec: CompactRecommender,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    num_beams: int,
    batch_size: int,
) -> dict[str, float]:
    from genrec.eval import evaluate_topk

    top, _ = rec.recommend(histories, k=10, num_beams=num_beams, batch_size=batch_size)
    return evaluate_topk(top, targets, ks=(5, 10))


def _epoch_history(log_history: list[dict]) -> list[dict]:
    """One record per epoch from the trainer's log: loss, tokens/s, ... and the ``valid_*`` metrics.

    The trainer checkpoints its log, so this (and everything derived from it: best epoch, epochs without
    improvement) resumes with the run and needs no state of its own.
    """
    records: dict[int, dict] = {}
    for entry in log_history:
        if "loss" not in entry and not any(k.startswith("eval_") for k in entry):
            continue  # e.g. the end-of-training summary
        record = records.setdefault(entry["step"], {"epoch": round(entry["epoch"]), "step": entry["step"]})
        for key, value in entry.items():
            if key not in ("epoch", "step"):
                record["valid_" + key.removeprefix("eval_") if key.startswith("eval_") else key] = value
    return list(records.values())


def _progress(history: list[dict], metric: str) -> dict[str, float | int]:
    """Epochs done, best validation ``metric`` and its epoch, and epochs since it (strictly better wins)."""
    best, best_epoch, epoch = -math.inf, 0, 0
    for record in history:
        if f"valid_{metric}" in record:
            epoch = record["epoch"]
            if record[f"valid_{metric}"] > best:
                best, best_epoch = record[f"valid_{metric}"], epoch
    return {"epoch": epoch, "best": best, "best_epoch": best_epoch, "bad_epochs": epoch - best_epoch}


class CompactTrainer(Trainer):
    """The transformers loop for a :class:`CompactRecommender`, validated by constrained beam search.

    ``evaluate`` (run by the trainer at the end of every epoch, before the epoch's checkpoint) scores
    the validation users with the decoding the model is used with, saves ``output_dir/best`` on a new
    best, and stops training after ``patience`` epochs without one or once ``max_minutes`` are spent.
    """

    def __init__(self, *args: Any, rec: CompactRecommender, config: CompactTrainingConfig, **kwargs: Any):
        super().__init__(*args, model=rec.model, processing_class=rec.tokenizer, **kwargs)
        self.rec, self.config = rec, config
        self._epoch_start: tuple[float, int] | None = None
        self._call_start = time.monotonic()

    def _get_train_sampler(self, train_dataset: Any = None) -> LengthBucketSampler:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(f["input_ids"]) for f in dataset]
        return LengthBucketSampler(lengths, self.args.train_batch_size, self.args.seed)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._call_start = time.monotonic()  # max_minutes budgets this call, not the run (as it always has)
        return super().train(*args, **kwargs)

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        if self._epoch_start is None:
            self._epoch_start = (time.monotonic(), self.state.num_input_tokens_seen)
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._epoch_start is not None:  # logging_strategy="epoch": once per epoch
            t0, tokens = self._epoch_start
            seconds = time.monotonic() - t0
            tokens = self.state.num_input_tokens_seen - tokens
            logs = {**logs, "train_s": seconds, "tokens_per_s": tokens / seconds}
            self._epoch_start = None
            start_time = None  # these replace the library's since-the-call-began speed (eval time included)
        super().log(logs, start_time)

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        valid = eval_dataset if eval_dataset is not None else self.eval_dataset
        t0 = time.monotonic()
        scores = evaluate_compact(
            self.rec, valid.histories, valid.targets, self.config.eval_beams, self.args.eval_batch_size
        )
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
        metrics[f"{metric_key_prefix}_runtime"] = time.monotonic() - t0
        self.log(metrics)
        history = _epoch_history(self.state.log_history)
        progress = _progress(history, self.config.metric)
        improved = progress["best_epoch"] == progress["epoch"]
        logger.info(
            "epoch %d: loss %.4f, %.0f tokens/s, valid %s=%.4f%s",
            progress["epoch"],
            history[-1].get("loss", math.nan),
            history[-1].get("tokens_per_s", math.nan),
            self.config.metric,
            scores[self.config.metric],
            " (best)" if improved else "",
        )
        if improved and self.is_world_process_zero():
            with atomic_directory(Path(self.args.output_dir) / "best") as folder:
                self.rec.save_pretrained(folder)
        if progress["bad_epochs"] >= self.config.patience:
            logger.info("stopping: no better %s in %d epochs", self.config.metric, progress["bad_epochs"])
            self.control.should_training_stop = True
        minutes = (time.monotonic() - self._call_start) / 60
        if self.config.max_minutes is not None and minutes > self.config.max_minutes:
            logger.info("stopping: %.1f-minute budget spent", self.config.max_minutes)
            self.control.should_training_stop = True
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # checkpoints are whole recommender folders: resumable and loadable with from_pretrained alike
        super()._save(output_dir, state_dict)
        if self.is_world_process_zero():
            self.rec.save_item_table(output_dir or self.args.output_dir)


def _training_args(config: CompactTrainingConfig) -> TrainingArguments:
    """One epoch = one log, one validation, one checkpoint (the latest kept); the loss is the model's mean
    over every labelled token."""
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=config.output_dir,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        max_grad_norm=config.max_grad_norm,
        label_smoothing_factor=config.label_smoothing,
        logging_strategy="epoch",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        include_num_input_tokens_seen="non_padding",
        seed=config.seed,
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        report_to="none",
    )


def _check_resumable(checkpoint: Path, rec: CompactRecommender) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``checkpoint`` holds the model ``rec`` would train."""
    meta = read_json(checkpoint / _META)
    if meta["compact"] != asdict(rec.config):
        raise CheckpointMismatchError(
            f"{checkpoint}: saved with compact config {meta['compact']}, this run has {asdict(rec.config)}"
        )
    if meta.get("catalog_fingerprint") not in (None, rec.catalog_fingerprint):
        raise CheckpointMismatchError(
            f"{checkpoint}: saved for catalog {meta['catalog_fingerprint']}, got {rec.catalog_fingerprint}"
        )
    table = load_file(str(checkpoint / _ITEM_TOKENS))["item_token_ids"].numpy()
    if not np.array_equal(table, rec.item_token_ids):
        raise CheckpointMismatchError(f"{checkpoint}: saved with other item tokens (semantic IDs)")


def validation_users(dataset: SequenceDataset, config: CompactTrainingConfig) -> np.ndarray:
    """Indices of the (fixed, seeded) validation users early stopping watches."""
    n = dataset.num_users
    if config.eval_users and config.eval_users < n:
        return np.sort(np.random.default_rng(config.eval_seed).choice(n, config.eval_users, replace=False))
    return np.arange(n)


def training_sequences(dataset: SequenceDataset, config: CompactTrainingConfig) -> list[np.ndarray]:
    """``dataset.train_sequences()``, less the validation users' last items with ``eval_unseen_last``, cut
    into windows of ``compact.max_items`` with ``train_windows``."""
    if config.eval_unseen_last:
        dataset = dataset.without_last_training_item(validation_users(dataset, config))
    sequences = dataset.train_sequences()
    if not config.train_windows:
        return sequences
    width = config.compact.max_items
    return [s[max(0, end - width) : end] for s in sequences for end in range(len(s), 0, -width)]


def train_compact(
    dataset: SequenceDataset,
    item_tokens: Sequence[Sequence[str]],
    config: CompactTrainingConfig,
    callbacks: list[TrainerCallback] | None = None,
) -> CompactRecommender:
    """Train on ``dataset.train_sequences()`` with :class:`CompactTrainer`, return the best model.

    In ``output_dir``: ``checkpoint-<step>``, the latest epoch (transformers' checkpoint with optimizer,
    scheduler and RNG state, and a :meth:`CompactRecommender.from_pretrained` folder), resumed exactly
    when ``config.resume``; ``best``, the best validation model; ``trainer_state.json``, the per-epoch
    ``history`` and the best epoch. ``callbacks`` go to the trainer.
    """
    threads = configure_threads(config.num_threads)
    seed_everything(config.seed)
    out = Path(config.output_dir)
    fingerprint = dataset.catalog.fingerprint()
    rec = CompactRecommender.from_item_tokens(item_tokens, config.compact, fingerprint, seed=config.seed)
    checkpoint = latest_checkpoint(out)
    if checkpoint is None and config.resume and (out / "last").is_dir():
        logger.warning("%s/last: the pre-Trainer checkpoint format, not resumed; training from scratch", out)
    if checkpoint is not None and not config.resume:
        logger.warning("resume=False: removing the checkpoints in %s", out)
        for _, stale in checkpoint_steps(out):
            shutil.rmtree(stale)
        checkpoint = None
    progress = {"epoch": 0, "bad_epochs": 0}
    if checkpoint is not None:
        _check_resumable(checkpoint, rec)
        progress = _progress(
            _epoch_history(read_json(checkpoint / TRAINER_STATE)["log_history"]), config.metric
        )
        logger.info("resuming from %s (epoch %d)", checkpoint, progress["epoch"])
    logger.info("compact model: %.2fM parameters, %d threads", rec.num_parameters() / 1e6, threads)

    valid = dataset.valid_examples()
    trainer = CompactTrainer(
        rec=rec,
        config=config,
        args=_training_args(config),
        train_dataset=[rec.training_features(s) for s in training_sequences(dataset, config) if len(s) > 0],
        eval_dataset=valid.subset(validation_users(dataset, config)),
        data_collator=functools.partial(_pad, pad_token_id=rec.tokenizer.pad_token_id),
        callbacks=callbacks,
    )
    if progress["epoch"] < config.epochs and progress["bad_epochs"] < config.patience:
        trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    else:
        logger.info("%s: the run has finished (epoch %d)", checkpoint, progress["epoch"])

    best = out / "best"
    checkpoint = latest_checkpoint(out)
    if checkpoint is None or not (best / _META).is_file():
        raise RuntimeError(f"no epoch finished; nothing saved in {out}")
    state = read_json(checkpoint / TRAINER_STATE)
    history = _epoch_history(state["log_history"])
    summary = {**_progress(history, config.metric), "step": state["global_step"], "history": history}
    atomic_write_json(out / "trainer_state.json", {**summary, "config": asdict(config)})
    return CompactRecommender.from_pretrained(best, catalog=dataset.catalog)
