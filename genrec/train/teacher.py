"""Teacher explanations: a local instruct model explains training pairs; only faithful ones become targets.

The default teacher is the recommender's own base model with its LoRA adapter disabled, prompted with the
explanation template (the history's and the item's catalog attributes). Each explanation is checked with
:func:`~genrec.eval.explain.check_explanation` and kept only when every brand, category, title and price
band it names belongs to the item or the history (faithful, hence not hallucinated), then distilled into
the tuned model through the same SFT mix as the other sources.

Generation is slow, so ``max_count`` bounds how many pairs are explained, and every generated text is cached
in a JSONL file under a key of its prompt and decoding settings: a rerun generates only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genrec.data.dataset import SequenceDataset
from genrec.data.readers import iter_json_lines, require_keys
from genrec.eval.explain import AttributeVocabulary, check_explanation
from genrec.model.explain import ExplanationConfig
from genrec.prompts.explanations import ExplanationExample, training_pairs
from genrec.utils import atomic_write, get_logger

logger = get_logger(__name__)


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}
    for number, record in iter_json_lines(path) if path.is_file() else ():
        require_keys(record, ("key", "explanation"), path, number)
        cache[record["key"]] = record
    return cache


def _write_cache(path: Path, cache: dict[str, dict[str, Any]]) -> None:
    with atomic_write(path) as fh:
        fh.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in cache.values())


def teacher_explanations(
    rec: Any,
    dataset: SequenceDataset,
    max_count: int,
    cache_path: str | Path,
    config: ExplanationConfig | None = None,
    explainer: Literal["adapter", "base"] = "base",
    batch_size: int = 32,
    seed: int = 0,
) -> list[ExplanationExample]:
    """Explanations by ``rec``'s ``explainer`` for ``max_count`` random training pairs (seeded), keeping the
    faithful, non-empty ones. ``cache_path`` (JSONL, rewritten atomically after each batch) holds every
    generated text, accepted or not."""
    if max_count < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count}")
    config = config or ExplanationConfig()
    catalog = dataset.catalog
    pairs = list(training_pairs(dataset))
    chosen = np.sort(
        np.random.default_rng(seed).choice(len(pairs), min(max_count, len(pairs)), replace=False)
    )
    selected = [pairs[k] for k in chosen]
    settings = json.dumps({**dataclasses.asdict(config), "explainer": explainer}, sort_keys=True)
    keys = [
        hashlib.sha256((settings + rec.explanation_prompt(history, item, config)).encode()).hexdigest()[:24]
        for _, history, item in selected
    ]
    cache_path = Path(cache_path)
    cache = _read_cache(cache_path)
    missing = [k for k, key in enumerate(keys) if key not in cache]
    logger.info(
        "teacher: %d of %d explanations cached in %s", len(keys) - len(missing), len(keys), cache_path
    )
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        histories, items = [selected[k][1] for k in batch], [selected[k][2] for k in batch]
        texts = rec.explain(histories, items, config, explainer, batch_size)
        for k, history, item, text in zip(batch, histories, items, texts):
            cache[keys[k]] = {
                "key": keys[k],
                "user": dataset.users[selected[k][0]],
                "history": [catalog[i].id for i in history.tolist()],
                "item": catalog[item].id,
                "explanation": text,
            }
        _write_cache(cache_path, cache)
        logger.info("teacher: %d of %d explanations generated", start + len(batch), len(missing))
    vocabulary = AttributeVocabulary.from_catalog(catalog)
    out = []
    for (_, history, item), key in zip(selected, keys):
        text = cache[key]["explanation"]
        if (
            text
            and check_explanation(text, catalog[item], [catalog[i] for i in history], vocabulary).faithful
        ):
            out.append(ExplanationExample(history, item, text))
    logger.info("teacher: %d of %d explanations are faithful and kept", len(out), len(selected))
    return out
