"""Explanation decoding: batched, left-padded ``model.generate`` whose every setting is an explicit argument.

transformers fills each setting a passed ``GenerationConfig`` leaves unset (repetition penalty, top-k,
suppressed tokens, ...) from ``model.generation_config``, which a checkpoint or a caller may have changed.
:func:`generate_texts` therefore makes its own config the model's for the duration of the call, so the
output depends on :class:`ExplanationConfig` and the library defaults only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


@dataclass(frozen=True)
class ExplanationConfig:
    """How explanations are decoded. Greedy by default, so the same input gives the same text; with
    ``do_sample=True`` tokens are sampled at ``temperature`` from the top-``top_p`` mass (seed torch for
    repeatable samples). ``template`` names the explanation template; ``phrasing`` picks its phrasing.
    ``grounded`` (default) bans brand, category and price-band phrases that neither the item nor the
    history has (:mod:`genrec.decoding.grounded`), as the item trie keeps recommendations in the catalog;
    with ``copy_titles`` (default) it also makes every quotation copy a title of the item or the history.
    ``whole_sentences`` (default) trims a text that ran out of ``max_new_tokens`` back to its last complete
    sentence, so a shopper never reads an explanation that stops mid-title."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1
    template: str = "explanation"
    phrasing: int = 0
    grounded: bool = True
    copy_titles: bool = True
    whole_sentences: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError(
                f"max_new_tokens and num_beams must be >= 1, got {self.max_new_tokens} and {self.num_beams}"
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def generation_config(self, tokenizer: Any, suppress_ids: Sequence[int] = ()) -> GenerationConfig:
        """The full ``GenerationConfig``; ``suppress_ids`` are tokens never generated (the SID tokens)."""
        sampling = (
            {"temperature": self.temperature, "top_p": self.top_p, "top_k": 0} if self.do_sample else {}
        )
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            num_beams=self.num_beams,
            num_return_sequences=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            suppress_tokens=list(suppress_ids) or None,
            **sampling,
        )


def encode_left_padded(tokenizer: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenized ``(input_ids, attention_mask)`` padded on the left: every row ends at the last column."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    return enc["input_ids"], enc["attention_mask"]


# a sentence ends at . ! or ? (closing quotes or brackets may follow) before whitespace or the end of the text
_SENTENCE_END = re.compile(r"[.!?][\"\u201d')\]]*(?=\s|$)")


def trim_to_sentence(text: str) -> str:
    """``text`` up to the end of its last complete sentence; unchanged when it has none. A full stop inside
    an open quotation (a quoted title: "... For Your Face. Botanical ...", "e.l.f. Mascara") ends nothing."""

    def quoted(end: int) -> bool:
        before = text[:end]
        return before.count('"') % 2 == 1 or before.count("\u201c") > before.count("\u201d")

    ends = [m.end() for m in _SENTENCE_END.finditer(text) if not quoted(m.end())]
    return text[: ends[-1]] if ends else text


@contextmanager
def _as_model_generation_config(model: Any, config: GenerationConfig) -> Iterator[None]:
    """``config`` as ``model.generation_config`` for one call (see the module docstring for why)."""
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = hf_model.generation_config
    hf_model.generation_config = config
    try:
        yield
    finally:
        hf_model.generation_config = saved


@torch.no_grad()
def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    config: ExplanationConfig,
    suppress_ids: Sequence[int] = (),
    logits_processors: Callable[[int], Sequence[LogitsProcessor]] | None = None,
) -> list[str]:
    """One continuation per prompt (special tokens dropped, whitespace stripped), in one ``generate`` call.
    ``logits_processors(prompt_length)``, when given, builds extra processors for the call; this is how
    :meth:`GenerativeRecommender.explain` applies ``config.grounded``, which needs the catalog.
    A continuation that ran out of tokens (it ends in neither EOS nor padding) is trimmed to whole sentences
    when ``config.whole_sentences``."""
    if not prompts:
        return []
    gen_config = config.generation_config(tokenizer, suppress_ids)
    ids, mask = encode_left_padded(tokenizer, prompts)
    device = next(model.parameters()).device
    extra = LogitsProcessorList(logits_processors(ids.shape[1]) if logits_processors else [])
    with _as_model_generation_config(model, gen_config):
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            generation_config=gen_config,
            logits_processor=extra,
        )
    new = out[:, ids.shape[1] :]
    texts = [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    if not config.whole_sentences or new.shape[1] < config.max_new_tokens:
        return texts
    stops = torch.tensor([i for i in (gen_config.eos_token_id, gen_config.pad_token_id) if i is not None])
    cut = ~torch.isin(new[:, -1].cpu(), stops)
    return [trim_to_sentence(t) if c else t for t, c in zip(texts, cut.tolist())]
