"""``GenerativeRecommender``: a causal LM + SID tokens + prompt templates that recommends catalog items.

The LM reads a prompt rendered from the user's history (semantic IDs, optionally titles) and writes the
next item's semantic ID; :func:`genrec.decoding.constrained_beam_search` over the item trie guarantees every
answer is a real item. One folder holds everything needed to reload it::

    adapter_config.json, adapter_model.safetensors   standard peft LoRA adapter (+ the SID token rows)
    tokenizer files                                  base tokenizer + the SID tokens
    semantic_ids/                                    SemanticIDs.save_pretrained
    prompts/*.yaml                                   the templates it was trained with
    genrec_config.json                               base model, catalog + SID fingerprints, settings
    README.md                                        model card
    (model/ instead of the adapter for a model without LoRA; compact/ for the compact backbone)
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import LogitsProcessor

from genrec.data.attributes import AttributeVocabulary
from genrec.data.dataset import Catalog, Item
from genrec.data.generic import read_items_jsonl, write_items_jsonl
from genrec.decoding.grounded import (
    GroundedPhrasesProcessor,
    PhraseTrie,
    QuotedTitlesProcessor,
    closing_quote_tokens,
)
from genrec.errors import CheckpointMismatchError, TemplateError, UnknownItemError
from genrec.model.adapters import LoraSettings, apply_lora
from genrec.model.explain import ExplanationConfig, encode_left_padded, generate_texts
from genrec.model.loading import load_base_model
from genrec.model.tokens import add_sid_tokens, item_token_table, sid_vocab_ids
from genrec.prompts.examples import ChatFormat, PromptBuilder
from genrec.prompts.explanations import EXPLANATION_HISTORY
from genrec.prompts.templates import TaskTemplate, load_template, load_templates
from genrec.utils import atomic_write, atomic_write_json, get_logger, read_json

logger = get_logger(__name__)

CONFIG_NAME = "genrec_config.json"
CATALOG_NAME = "catalog.jsonl"
FORMAT_VERSION = 1


def sid_fingerprint(sid: Any) -> str:
    """Hash of the codes and codebook sizes: SID maps with equal fingerprints tokenize items alike."""
    h = hashlib.sha256(np.ascontiguousarray(sid.codes, dtype=np.int64).tobytes())
    h.update(repr(list(sid.codebook_sizes)).encode())
    return h.hexdigest()[:16]


@dataclass
class Recommendation:
    """Ranked items for one user, best first, with their beam scores (summed token log-probabilities) and,
    when asked for (``generate(..., explain=True)``), one explanation per item."""

    item_ids: list[str]
    titles: list[str]
    indices: np.ndarray
    scores: np.ndarray
    semantic_ids: list[str] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)


class GenerativeRecommender:
    """Wraps a HF causal LM (+ tokenizer) with a catalog, its semantic IDs and the prompt templates.

    Build one with :meth:`build` (loads the base model, adds the SID tokens, applies LoRA), train it with
    :mod:`genrec.train`, recommend with :meth:`generate`, persist with :meth:`save_pretrained`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        catalog: Any,
        sid: Any,
        templates: dict[str, TaskTemplate] | None = None,
        task: str = "seqrec",
        max_history: int = 20,
        base_model: str | None = None,
        settings: dict[str, Any] | None = None,
        compact: Any = None,
    ):
        if len(sid.codes) != len(catalog):
            raise CheckpointMismatchError(
                f"SID map covers {len(sid.codes)} items, catalog has {len(catalog)}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.sid = sid
        self.compact = compact
        self.templates = templates or {}
        self.task = task
        self.max_history = max_history
        self.base_model = base_model
        self.settings = settings or {}
        if compact is None:
            if task not in self.templates:
                raise TemplateError(f"template {task!r} not loaded; have {sorted(self.templates)}")
            if self.templates[task].task not in ("seqrec", "sequence"):
                raise TemplateError(
                    f"{self.templates[task].path}: generate needs a seqrec or sequence template"
                )
            self.token_table = item_token_table(tokenizer, sid)
        else:
            self.token_table = np.asarray(_prompt_model(self.compact).item_token_ids)
        self._trie = None
        self._builder: PromptBuilder | None = None
        self._vocabulary: AttributeVocabulary | None = None  # grounded explanations, built on first use
        self._phrase_trie_cache: PhraseTrie | None = None
        self._closing_quotes_cache: list[int] | None = None
        self._titles: dict[str, int] | None = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        catalog: Any,
        sid: Any,
        base_model: str | None = None,
        gguf_file: str | None = None,
        lora: LoraSettings | None = None,
        quantization: str | None = None,
        dtype: str = "float32",
        templates: dict[str, TaskTemplate] | None = None,
        task: str = "seqrec",
        max_history: int = 20,
        model: Any = None,
        tokenizer: Any = None,
        full_finetune: bool = False,
        sid_init: str = "text",
        num_layers: int | None = None,
        sid_restricted_softmax: bool = True,
    ) -> GenerativeRecommender:
        """Load the base LM (default SmolLM2-135M-Instruct), add SID tokens, wrap it in LoRA.

        ``lora`` defaults to :class:`LoraSettings` (``full_finetune=True`` trains every weight instead).
        Pass ``model``/``tokenizer`` to wrap an already loaded LM (``base_model`` then names where its
        weights can be reloaded from, which saving an adapter needs). ``sid_init``: new SID token rows
        start from their items' title words (``"text"``) or from the vocabulary mean (``"mean"``).
        ``num_layers`` keeps the base model's first N layers. ``sid_restricted_softmax``: answers are
        scored with a softmax over the SID tokens and end-of-answer only, in training and in decoding.
        """
        if sid_init not in ("text", "mean"):
            raise ValueError(f"sid_init must be 'text' or 'mean', got {sid_init!r}")
        spec = base_model
        if model is None:
            model, tokenizer, spec = load_base_model(base_model, gguf_file, quantization, dtype, num_layers)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with the model")
        add_sid_tokens(tokenizer, model, sid, item_texts=catalog.titles if sid_init == "text" else None)
        lora = None if full_finetune else (lora or LoraSettings())
        if lora is not None:
            model = apply_lora(model, sid_vocab_ids(tokenizer, sid), lora, quantized=quantization is not None)
        settings = {
            "lora": lora.to_dict() if lora is not None else None,
            "quantization": quantization,
            "dtype": dtype,
            "num_layers": num_layers,
            "sid_restricted_softmax": sid_restricted_softmax,
        }
        return cls(
            model,
            tokenizer,
            catalog,
            sid,
            templates if templates is not None else load_templates(),
            task=task,
            max_history=max_history,
            base_model=spec,
            settings=settings,
        )

    @classmethod
    def from_compact(cls, compact: Any, catalog: Any, sid: Any) -> GenerativeRecommender:
        """Wrap a :class:`genrec.model.compact.CompactRecommender` (prompts are its own SID sequences), or a
        :class:`genrec.model.channels.MultiChannelRecommender`, whose merged beams ``generate`` returns;
        ``sid`` and the prompts are then channel 0's."""
        first = _prompt_model(compact)
        if len(first.item_token_ids) != len(catalog):
            raise CheckpointMismatchError(
                f"compact model covers {len(first.item_token_ids)} items, catalog has {len(catalog)}"
            )
        return cls(
            first.model,
            first.tokenizer,
            catalog,
            sid,
            max_history=first.config.max_items,
            base_model="compact",
            compact=compact,
        )

    # -- inputs ----------------------------------------------------------------------------------
    @property
    def trie(self) -> Any:
        from genrec.decoding import ItemTrie

        if self._trie is None:
            self._trie = ItemTrie.from_token_ids(self.token_table)
        return self._trie

    @property
    def score_token_ids(self) -> np.ndarray | None:
        """The tokens answer softmaxes normalise over (SID tokens + end-of-answer), or None for all.

        Training (:class:`genrec.train.GenRecSFTTrainer`) and decoding both read this, so a beam's score
        is exactly the log-likelihood the model was trained to maximise.
        """
        if self.compact is not None or not self.settings.get("sid_restricted_softmax", True):
            return None
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        return np.concatenate([sid_vocab_ids(self.tokenizer, self.sid), np.asarray(eos, dtype=np.int64)])

    @property
    def template(self) -> TaskTemplate:
        return self.templates[self.task]

    def _indices(self, history: Sequence[Any], user: int) -> np.ndarray:
        """Item ids, exact titles or dense indices -> dense indices; anything else is an UnknownItemError."""
        out = []
        for item in history:
            if isinstance(item, (int, np.integer)):
                if not 0 <= int(item) < len(self.catalog):
                    raise UnknownItemError(item, f"history {user}: index outside the catalog")
                out.append(int(item))
            elif item in self.catalog:
                out.append(self.catalog.index_of(item))
            else:
                if self._titles is None:
                    self._titles = {}
                    for i, title in enumerate(self.catalog.titles):
                        self._titles.setdefault(title, i)
                if item not in self._titles:
                    raise UnknownItemError(item, f"history {user}: neither an item id nor a title")
                out.append(self._titles[item])
        return np.asarray(out, dtype=np.int64)

    def prompt(self, history: Sequence[int], phrasing: int = 0) -> str:
        """The full prompt text (chat template applied) for one history of dense indices.

        An empty history gets the template's ``cold_start`` prompt: the model then recommends from what
        it learned about the catalog as a whole (in practice, popular items).
        """
        if self._builder is None:
            self._builder = PromptBuilder.from_catalog(self.catalog, self.sid)
        history = np.asarray(history, dtype=np.int64)[-self.max_history :]
        chat = ChatFormat(self.tokenizer, self.template.system)
        return self._builder.next_item_prompt(self.template, chat, history, phrasing)

    def encode_prompts(
        self, histories: Sequence[np.ndarray], phrasing: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(input_ids, attention_mask)`` for dense-index histories, as decoding wants them."""
        if self.compact is not None:
            return _prompt_model(self.compact).encode_histories(histories)
        return encode_left_padded(self.tokenizer, [self.prompt(h, phrasing) for h in histories])

    def explanation_template(self, name: str = "explanation") -> TaskTemplate:
        """The explanation template ``name``; a clear error when it was not loaded with the recommender."""
        if self.compact is not None:
            raise ValueError("the compact backbone has no text vocabulary: explanations need an LLM backbone")
        template = self.templates.get(name)
        if template is None or template.task != "explanation":
            raise TemplateError(
                f"explanations need an explanation-task template named {name!r} (prompts/{name}.yaml); "
                f"loaded: {sorted(self.templates)}. Add it to the recipe's data.tasks (weight 0 loads it "
                "without training it) or pass templates=load_templates(names=[..., 'explanation'])"
            )
        return template

    def explanation_prompt(self, history: Sequence[int], item: int, config: ExplanationConfig) -> str:
        """The full prompt asking why ``item`` suits a user with ``history`` (dense indices); the history is
        cut to its last :data:`~genrec.prompts.explanations.EXPLANATION_HISTORY` items, as in training."""
        if self._builder is None:
            self._builder = PromptBuilder.from_catalog(self.catalog, self.sid)
        template = self.explanation_template(config.template)
        window = np.asarray(history, dtype=np.int64)[-EXPLANATION_HISTORY:]
        values = self._builder.explanation_values(window.tolist(), int(item))
        return ChatFormat(self.tokenizer, template.system)(template.render_prompt(values, config.phrasing))

    @contextmanager
    def _inference(self) -> Iterator[torch.device]:
        """Eval mode for the duration (dropout off), restoring train mode after; yields the model's device."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield next(self.model.parameters()).device
        finally:
            self.model.train(was_training)

    def _check_explainer(self, explainer: str) -> None:
        if explainer not in ("adapter", "base"):
            raise ValueError(f"explainer must be 'adapter' or 'base', got {explainer!r}")
        if explainer == "base" and not hasattr(self.model, "disable_adapter"):
            raise ValueError("explainer='base' needs a LoRA adapter to disable; this model has none")

    def _explainer(self, explainer: str) -> Any:
        """A context in which ``self.model`` is the chosen explainer: the tuned adapter, or the base model."""
        self._check_explainer(explainer)
        return self.model.disable_adapter() if explainer == "base" else nullcontext()

    @torch.no_grad()
    def explain(
        self,
        histories: Sequence[Sequence[int]],
        items: Sequence[int],
        config: ExplanationConfig | None = None,
        explainer: Literal["adapter", "base"] = "adapter",
        batch_size: int = 64,
    ) -> list[str]:
        """One explanation per ``(history, item)`` pair (dense indices), ``batch_size`` prompts per
        ``generate`` call. ``explainer="base"`` disables the LoRA adapter: the base model explains zero-shot.
        SID tokens are never generated: explanations name items by their titles."""
        if len(histories) != len(items):
            raise ValueError(f"{len(histories)} histories but {len(items)} items")
        config = config or ExplanationConfig()
        prompts = [self.explanation_prompt(h, i, config) for h, i in zip(histories, items)]
        suppress = sid_vocab_ids(self.tokenizer, self.sid).tolist()
        # what each prompt shows: its history window and the item
        shown = [
            [self.catalog[j] for j in (*list(h)[-EXPLANATION_HISTORY:], i)] for h, i in zip(histories, items)
        ]
        allowed = self._grounding_allowed(shown) if config.grounded else None
        texts: list[str] = []
        with self._inference(), self._explainer(explainer):
            for start in range(0, len(prompts), batch_size):
                chunk = slice(start, start + batch_size)
                processors = None
                if allowed is not None:
                    processors = functools.partial(
                        self._grounding_processors, allowed[chunk], shown[chunk], config
                    )
                texts.extend(
                    generate_texts(self.model, self.tokenizer, prompts[chunk], config, suppress, processors)
                )
        return texts

    def _grounding_processors(
        self,
        allowed: Sequence[frozenset],
        shown: Sequence[Sequence[Item]],
        config: ExplanationConfig,
        prompt_length: int,
    ) -> list[LogitsProcessor]:
        """Phrase grounding, inside (with ``config.copy_titles``) quotations that copy a shown title."""
        grounding = GroundedPhrasesProcessor(
            self._phrase_trie(), allowed, prompt_length, num_beams=config.num_beams
        )
        if not config.copy_titles:
            return [grounding]
        titles = [[item.title for item in row] for row in shown]
        return [
            QuotedTitlesProcessor(
                self.tokenizer, titles, prompt_length, config.num_beams, self._closing_quotes(), grounding
            )
        ]

    def _grounding_allowed(self, shown: Sequence[Sequence[Item]]) -> list[frozenset]:
        """What each explanation may name: the attributes of the items its prompt shows (history window and
        item). Their titles join the phrase trie, so quoting them is never cut short by a brand inside."""
        vocab, allowed = self._attribute_vocabulary(), []
        for items in shown:
            self._phrase_trie().add(vocab.title_surfaces(items))
            allowed.append(vocab.attributes_of_all(items))
        return allowed

    def _attribute_vocabulary(self) -> AttributeVocabulary:
        if self._vocabulary is None:
            self._vocabulary = AttributeVocabulary.from_catalog(self.catalog)
        return self._vocabulary

    def _closing_quotes(self) -> list[int]:
        if self._closing_quotes_cache is None:
            self._closing_quotes_cache = closing_quote_tokens(self.tokenizer)
        return self._closing_quotes_cache

    def _phrase_trie(self) -> PhraseTrie:
        """Built once per model (tokenizing every spelling of every attribute phrase takes seconds)."""
        if self._phrase_trie_cache is None:
            self._phrase_trie_cache = PhraseTrie(self.tokenizer, self._attribute_vocabulary().surfaces)
        return self._phrase_trie_cache

    # -- recommending ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        histories: Sequence[Any] | Sequence[Sequence[Any]],
        num_items: int = 10,
        num_beams: int | None = None,
        batch_size: int = 16,
        phrasing: int = 0,
        exclude_history: bool = False,
        explain: bool = False,
        explanation: ExplanationConfig | None = None,
        explainer: Literal["adapter", "base"] = "adapter",
        item_weight: float = 1.0,
    ) -> Recommendation | list[Recommendation]:
        """Top ``num_items`` catalog items for one history or a batch, best first.

        A history is a list of item ids, exact titles or dense indices (mixed freely), oldest first; a list
        of such lists is a batch (returns a list). ``num_beams`` defaults to ``num_items``. Settings come
        only from these arguments; the model's ``generation_config`` is not consulted.
        ``exclude_history=True`` removes each user's own items inside the beam search, so all
        ``num_items`` are new to the user. A compact backbone with an item head re-ranks the beam's items
        by ``item_weight`` times the head's log-probability (:meth:`CompactRecommender.recommend`).

        ``explain=True`` adds an explanation of every item for its user (:meth:`explain`): decoded as
        ``explanation`` says (default :class:`ExplanationConfig`, greedy), by the tuned adapter or the base
        model (``explainer``), all items of ``batch_size`` users in one ``generate`` call.
        """
        from genrec.decoding import constrained_beam_search

        single = isinstance(histories, np.ndarray) and histories.ndim == 1
        if not single:
            if isinstance(histories, str):
                raise TypeError("histories must be a list of items (or a list of such lists), not a string")
            single = len(histories) == 0 or all(isinstance(h, (str, int, np.integer)) for h in histories)
        batch = [histories] if single else list(histories)
        indices = [self._indices(h, u) for u, h in enumerate(batch)]
        num_beams = num_items if num_beams is None else num_beams
        explanation = explanation or ExplanationConfig()
        if explain:  # fail before decoding, not after
            self.explanation_template(explanation.template)
            self._check_explainer(explainer)
        score_ids = self.score_token_ids
        results: list[Recommendation] = []
        with self._inference() as device:
            score_ids = None if score_ids is None else torch.from_numpy(score_ids).to(device)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                if self.compact is not None:
                    rows, row_scores = self.compact.recommend(
                        chunk,
                        k=num_items,
                        num_beams=num_beams,
                        batch_size=len(chunk),
                        exclude_history=exclude_history,
                        item_weight=item_weight,
                    )
                else:
                    ids, mask = self.encode_prompts(chunk, phrasing)
                    top, scores = constrained_beam_search(
                        self.model,
                        ids.to(device),
                        mask.to(device),
                        self.trie,
                        num_beams=num_beams,
                        num_return=num_items,
                        score_ids=score_ids,
                        exclude=chunk if exclude_history else None,
                    )
                    rows, row_scores = top.cpu().numpy(), scores.float().cpu().numpy()
                recs = [self._result(row, score) for row, score in zip(rows, row_scores)]
                if explain:
                    pair_histories = [h for h in chunk for _ in range(num_items)]
                    texts = self.explain(
                        pair_histories, rows.reshape(-1).tolist(), explanation, explainer, len(pair_histories)
                    )
                    for k, rec in enumerate(recs):
                        rec.explanations = texts[k * num_items : (k + 1) * num_items]
                results.extend(recs)
        return results[0] if single else results

    def _result(self, row: np.ndarray, score: np.ndarray) -> Recommendation:
        return Recommendation(
            item_ids=[self.catalog[i].id for i in row],
            titles=[self.catalog[i].title for i in row],
            indices=row.astype(np.int64),
            scores=score,
            semantic_ids=["".join(self.sid.item_tokens(i)) for i in row],
        )

    def recommend(
        self,
        histories: Sequence[np.ndarray],
        k: int = 10,
        num_beams: int | None = None,
        batch_size: int = 16,
        exclude_history: bool = False,
        item_weight: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation form: dense-index histories -> ``(items (U, k), scores (U, k))`` arrays."""
        recs = self.generate(
            [np.asarray(h) for h in histories],
            num_items=k,
            num_beams=num_beams,
            batch_size=batch_size,
            exclude_history=exclude_history,
            item_weight=item_weight,
        )
        assert isinstance(recs, list)
        return np.stack([r.indices for r in recs]), np.stack([r.scores for r in recs])

    # -- persistence -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {
            "format": "genrec-generative-recommender",
            "version": FORMAT_VERSION,
            "backbone": "compact" if self.compact is not None else "hf",
            "base_model": self.base_model,
            "task": self.task,
            "max_history": self.max_history,
            "num_items": len(self.catalog),
            "catalog_fingerprint": self.catalog.fingerprint(),
            "sid_fingerprint": sid_fingerprint(self.sid),
            "sid_levels": len(self.sid.codebook_sizes),
            "token_table_sha": hashlib.sha256(self.token_table.tobytes()).hexdigest()[:16],
            "templates": sorted(self.templates),
            **self.settings,
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the adapter (or full model), tokenizer, SID map, templates, config and a model card."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.compact is not None:
            self.compact.save_pretrained(directory / "compact")
        elif hasattr(self.model, "peft_config"):
            if self.base_model is None:
                raise ValueError(
                    "cannot save an adapter without knowing its base model: pass base_model= to build()"
                )
            # The SID rows live in the token adapter; the resized base matrix itself need not be saved.
            self.model.save_pretrained(directory, save_embedding_layers=False)
            self.tokenizer.save_pretrained(directory)
        else:
            self.model.save_pretrained(directory / "model")
            self.tokenizer.save_pretrained(directory / "model")
        self.sid.save_pretrained(directory / "semantic_ids")
        write_items_jsonl(self.catalog, directory / CATALOG_NAME)  # makes the folder self-contained
        prompts = directory / "prompts"
        prompts.mkdir(exist_ok=True)
        for template in self.templates.values():
            shutil.copyfile(template.path, prompts / Path(template.path).name)
        atomic_write_json(directory / CONFIG_NAME, self.config_dict())
        with atomic_write(directory / "README.md") as fh:
            fh.write(self._model_card())
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, catalog: Any = None, device: str | torch.device | None = None
    ) -> GenerativeRecommender:
        """Restore a saved recommender, for ``catalog`` or (by default) the catalog saved with it.

        A different catalog, SID map or SID token ids raise :class:`CheckpointMismatchError`.
        """
        from genrec.sid import SemanticIDs

        directory = Path(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a saved GenerativeRecommender folder")
        if catalog is None:
            items_path = directory / CATALOG_NAME
            if not items_path.is_file():
                raise FileNotFoundError(f"{items_path} not found: pass the catalog the model was trained on")
            catalog = Catalog(read_items_jsonl(items_path).values(), source=str(items_path))
        config = read_json(path)
        if config.get("format") != "genrec-generative-recommender" or config.get("version") != FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"{path}: unknown format {config.get('format')!r} v{config.get('version')}"
            )
        if catalog.fingerprint() != config["catalog_fingerprint"]:
            raise CheckpointMismatchError(
                f"{path}: saved for catalog {config['catalog_fingerprint']} ({config['num_items']} items), "
                f"got catalog {catalog.fingerprint()} ({len(catalog)} items)"
            )
        sid = SemanticIDs.from_pretrained(directory / "semantic_ids", catalog=catalog)
        if sid_fingerprint(sid) != config["sid_fingerprint"]:
            raise CheckpointMismatchError(
                f"{directory / 'semantic_ids'}: SID map {sid_fingerprint(sid)} differs from the one "
                f"the model was trained with ({config['sid_fingerprint']})"
            )
        if config["backbone"] == "compact":
            from genrec.model.channels import MultiChannelRecommender
            from genrec.model.compact import CompactRecommender

            if (directory / "compact" / "channels.json").is_file():  # saved by MultiChannelRecommender
                compact = MultiChannelRecommender.from_pretrained(directory / "compact", catalog=catalog)
            else:
                compact = CompactRecommender.from_pretrained(directory / "compact", catalog=catalog)
            rec = cls.from_compact(compact, catalog, sid)
        else:
            templates = {p.stem: load_template(p) for p in sorted((directory / "prompts").glob("*.yaml"))}
            rec = cls(
                *cls._load_lm(directory, config),
                catalog,
                sid,
                templates,
                task=config["task"],
                max_history=config["max_history"],
                base_model=config["base_model"],
                settings={k: config.get(k) for k in ("lora", "quantization", "dtype", "num_layers")}
                | {"sid_restricted_softmax": config.get("sid_restricted_softmax", True)},
            )
        table_sha = hashlib.sha256(rec.token_table.tobytes()).hexdigest()[:16]
        if table_sha != config["token_table_sha"]:
            raise CheckpointMismatchError(
                f"{directory}: SID tokens map to different token ids than at save time"
            )
        if device is not None:
            rec.model.to(device)
            for channel in getattr(rec.compact, "channels", [])[1:]:  # merged channels decode there too
                channel.model.to(device)
        return rec

    @staticmethod
    def _load_lm(directory: Path, config: dict[str, Any]) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if (directory / "model").is_dir():
            model_dir = directory / "model"
            return AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
        from peft import PeftModel

        tokenizer = AutoTokenizer.from_pretrained(directory)
        model, _, _ = load_base_model(
            config["base_model"],
            quantization=config.get("quantization"),
            dtype=config.get("dtype") or "float32",
            num_layers=config.get("num_layers"),
        )
        if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        return PeftModel.from_pretrained(model, directory), tokenizer

    def _model_card(self) -> str:
        c = self.config_dict()
        lora = c.get("lora") or {}
        return (
            "---\nlibrary_name: genrec\ntags: [generative-recommendation, semantic-ids, peft, lora]\n"
            f"base_model: {c['base_model']}\n---\n\n"
            "# Generative recommender (genrec)\n\n"
            f"A causal LM (`{c['base_model']}`, backbone `{c['backbone']}`) fine-tuned to answer with the "
            f"semantic ID of a user's next item. Catalog: {c['num_items']} items "
            f"(fingerprint `{c['catalog_fingerprint']}`); semantic IDs: {c['sid_levels']} levels "
            f"(fingerprint `{c['sid_fingerprint']}`). Prompt templates: {', '.join(c['templates'])}; "
            f"recommendation task `{c['task']}`, history capped at {c['max_history']} items.\n\n"
            + (
                f"LoRA r={lora.get('r')}, alpha={lora.get('alpha')}, targets {lora.get('target_modules')}; "
                f"SID token rows trained: {lora.get('train_sid_tokens')}.\n\n"
                if lora
                else ""
            )
            + "```python\nfrom genrec.model import GenerativeRecommender\n"
            "rec = GenerativeRecommender.from_pretrained(folder, catalog)  # same catalog as in training\n"
            'rec.generate(["item id or title", ...], num_items=10)\n```\n\n'
            "Every recommendation is a catalog item (trie-constrained beam search). The adapter is in the "
            "standard peft format; the base model must be resized to this tokenizer before "
            "`PeftModel.from_pretrained`.\n"
        )


def _prompt_model(compact: Any) -> Any:
    """The compact model whose SID sequences are the prompts: itself, or channel 0 of merged channels."""
    return compact.channels[0] if hasattr(compact, "channels") else compact
