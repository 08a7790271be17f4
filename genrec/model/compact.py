"""A compact from-scratch Llama over semantic-ID tokens (TIGER-sized), trained on whole user sequences.

The backbone is a real ``LlamaForCausalLM`` with a small ``PreTrainedTokenizerFast`` whose vocabulary is the
SID tokens plus a few specials, so it saves and loads with ``save_pretrained`` and decodes with the same
:func:`genrec.decoding.constrained_beam_search` as the LLM recommenders.

Training puts one sample per user: ``<bos>`` followed by the concatenated SID tokens of the (last
``max_items``) training items, with loss at every token. Causal attention makes each item's tokens a
prediction from everything before it, so one pass covers every sliding window of the sequence at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from genrec.data.dataset import SequenceDataset
from genrec.decoding import ItemTrie, constrained_beam_search
from genrec.errors import CheckpointMismatchError
from genrec.utils import (
    atomic_directory,
    atomic_write_json,
    configure_threads,
    get_logger,
    read_json,
    seed_everything,
)

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
    max_items: int = 20  # history items kept (the most recent ones)

    def llama_config(
        self, vocab_size: int, tokens_per_item: int, tokenizer: PreTrainedTokenizerFast
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
        )


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
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerFast,
        item_token_ids: np.ndarray,
        config: CompactConfig,
        catalog_fingerprint: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.item_token_ids = np.asarray(item_token_ids, dtype=np.int64)
        self.config = config
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
        model = LlamaForCausalLM(config.llama_config(len(tokenizer), table.shape[1], tokenizer))
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
    def recommend(
        self,
        histories: Sequence[np.ndarray],
        k: int = 10,
        num_beams: int = 20,
        batch_size: int = 64,
        progress: bool = False,
        exclude_history: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per history by constrained beam search: ``(items, scores)``, each (U, k).

        ``exclude_history=True`` keeps each user's own items out of their list (masked in the search).

        Histories are decoded in order of length so that each batch pads (and copies its KV cache
        across beams) for about its own length rather than the longest history's.
        """
        self.model.eval()
        device = self.model.device
        order = np.argsort([min(len(h), self.config.max_items) for h in histories], kind="stable")
        items = np.empty((len(histories), k), dtype=np.int64)
        scores = np.empty((len(histories), k), dtype=np.float32)
        for start in tqdm(range(0, len(order), batch_size), desc="decode", disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            ids, mask = self.encode_histories([histories[i] for i in rows])
            top, score = constrained_beam_search(
                self.model,
                ids.to(device),
                mask.to(device),
                self.trie,
                num_beams=num_beams,
                num_return=k,
                exclude=[histories[i] for i in rows] if exclude_history else None,
            )
            items[rows] = top.cpu().numpy()
            scores[rows] = score.cpu().numpy()
        return items, scores

    # -- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """HF model + tokenizer, item token table (safetensors), config and catalog fingerprint."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
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
        model = LlamaForCausalLM.from_pretrained(directory)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
        return cls(model, tokenizer, table, CompactConfig(**meta["compact"]), fingerprint)


# -- training ----------------------------------------------------------------------------------------


@dataclass
class CompactTrainingConfig:
    """Whole-sequence training with validation-based early stopping. YAML recipes map onto these fields."""

    output_dir: str = "runs/compact"
    compact: CompactConfig = field(default_factory=CompactConfig)
    epochs: int = 30
    batch_size: int = 128  # users per step
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine decay ends at learning_rate * min_lr_ratio
    max_grad_norm: float = 1.0
    eval_users: int = 2000  # validation users sampled (fixed) for early stopping; 0 = all
    eval_beams: int = 20
    eval_batch_size: int = 64
    metric: str = "ndcg@10"
    patience: int = 3  # epochs without improvement before stopping
    max_minutes: float | None = None  # wall-clock budget for training (checked after each epoch)
    seed: int = 0
    num_threads: int | None = None
    resume: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> CompactTrainingConfig:
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config fields {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(values.get("compact"), dict):
            values["compact"] = CompactConfig(**values["compact"])
        return cls(**values)


def _batch(rec: CompactRecommender, sequences: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Right-padded training batch; padding is masked out of attention and loss."""
    seqs = [rec.sequence_ids(s) for s in sequences]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), rec.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def _length_bucketed(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar-length users (sorted within pools of 50 batches): far less padding."""
    order = rng.permutation(len(lengths))
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


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


def train_compact(
    dataset: SequenceDataset,
    item_tokens: Sequence[Sequence[str]],
    config: CompactTrainingConfig,
) -> CompactRecommender:
    """Train on ``dataset.train_sequences()``, early-stop on validation, return the best model.

    ``output_dir/last`` holds the latest epoch with optimizer state (resumed when ``config.resume``);
    ``output_dir/best`` the best validation model, loadable with :meth:`CompactRecommender.from_pretrained`.
    """
    threads = configure_threads(config.num_threads)
    seed_everything(config.seed)
    out = Path(config.output_dir)
    last, best = out / "last", out / "best"
    fingerprint = dataset.catalog.fingerprint()
    if config.resume and (last / "trainer_state.json").is_file():
        rec = CompactRecommender.from_pretrained(last, catalog=dataset.catalog)
        state = read_json(last / "trainer_state.json")
        if state["config"]["compact"] != asdict(config.compact):
            raise CheckpointMismatchError(f"{last}: saved with compact config {state['config']['compact']}")
        logger.info("resuming from %s (epoch %d)", last, state["epoch"])
    else:
        rec = CompactRecommender.from_item_tokens(item_tokens, config.compact, fingerprint, seed=config.seed)
        state = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    model = rec.model
    logger.info("compact model: %.2fM parameters, %d threads", rec.num_parameters() / 1e6, threads)

    train = [s for s in dataset.train_sequences() if len(s) > 0]
    lengths = np.array([min(len(s), config.compact.max_items) for s in train])
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def lr_lambda(step: int) -> float:  # linear warmup, cosine decay to min_lr_ratio
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
        floor = config.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    if state["epoch"] > 0:
        opt_state = torch.load(last / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(opt_state["optimizer"])
        scheduler.load_state_dict(opt_state["scheduler"])

    valid = dataset.valid_examples()
    eval_idx = np.arange(len(valid))
    if config.eval_users and config.eval_users < len(valid):
        eval_idx = np.sort(
            np.random.default_rng(config.seed).choice(len(valid), config.eval_users, replace=False)
        )
    eval_hist = [valid.histories[i] for i in eval_idx]
    eval_targets = valid.targets[eval_idx]

    start_time = time.monotonic()
    for epoch in range(state["epoch"], config.epochs):
        if state["bad_epochs"] >= config.patience:
            break
        model.train()
        # Epoch-seeded shuffling and dropout: a resumed run replays exactly what an uninterrupted one does.
        torch.manual_seed(config.seed * 1000 + epoch)
        batches = _length_bucketed(
            lengths, config.batch_size, np.random.default_rng(config.seed * 1000 + epoch)
        )
        tokens, t0, loss_sum = 0, time.monotonic(), 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for rows in bar:
            batch = _batch(rec, [train[i] for i in rows])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            tokens += int(batch["attention_mask"].sum())
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        train_s = time.monotonic() - t0
        metrics = evaluate_compact(rec, eval_hist, eval_targets, config.eval_beams, config.eval_batch_size)
        score = metrics[config.metric]
        improved = score > state["best"]
        state.update(epoch=epoch + 1, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        state["history"].append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / steps_per_epoch,
                "tokens_per_s": tokens / train_s,
                "train_s": train_s,
                **{f"valid_{k}": v for k, v in metrics.items()},
            }
        )
        logger.info(
            "epoch %d: loss %.4f, %.0f tokens/s, valid %s=%.4f%s",
            epoch + 1,
            loss_sum / steps_per_epoch,
            tokens / train_s,
            config.metric,
            score,
            " (best)" if improved else "",
        )
        if improved:
            state.update(best=score, best_epoch=epoch + 1)
            with atomic_directory(best) as folder:
                rec.save_pretrained(folder)
        with atomic_directory(last) as folder:  # weights, optimizer and state of one epoch, or none
            rec.save_pretrained(folder)
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                folder / "optimizer.pt",
            )
            atomic_write_json(folder / "trainer_state.json", {**state, "config": asdict(config)})
        if config.max_minutes is not None and (time.monotonic() - start_time) / 60 > config.max_minutes:
            logger.info("stopping: %.1f-minute budget spent", config.max_minutes)
            break
    if not (best / _META).is_file():
        raise RuntimeError(f"no epoch finished; nothing saved in {best}")
    atomic_write_json(out / "trainer_state.json", {**state, "config": asdict(config)})
    return CompactRecommender.from_pretrained(best, catalog=dataset.catalog)
