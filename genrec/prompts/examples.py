"""Training examples from a :class:`~genrec.data.SequenceDataset`: rendered prompt/completion pairs.

Next-item examples are sliding windows over each user's TRAINING sequence (``seq[:-2]``), so the
validation and test targets never appear in a prompt or an answer; whole-sequence examples cut the same
sequences into windows and train every item of a window at once. Alignment examples (item text <->
semantic ID) come from the catalog. Explanation examples pair a history window and its next item with an
explanation target from one of the sources in :mod:`genrec.prompts.explanations`. Tasks are mixed by
per-template weights from the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from genrec.data.attributes import ItemAttributes, price_bands_of
from genrec.errors import TemplateError
from genrec.prompts.templates import TaskTemplate
from genrec.utils import get_logger

if TYPE_CHECKING:
    from genrec.prompts.explanations import ExplanationExample

logger = get_logger(__name__)

_MARK = "\x00GENREC_PROMPT\x00"


class ChatFormat:
    """Wraps a rendered user turn in the tokenizer's chat template (if it has one), as inference will.

    The template is rendered once around a marker and split into a prefix and suffix, so formatting
    100k examples is a string concatenation, not 100k Jinja renders. Tokenizers without a chat template
    (a compact backbone, a base model) get ``system\\nuser\\n``.
    """

    def __init__(self, tokenizer: Any, system: str | None):
        self.system = system
        self._parts: tuple[str, str] | None = None
        self._tokenizer = tokenizer if getattr(tokenizer, "chat_template", None) else None
        if self._tokenizer is not None:
            text = self._apply(_MARK)
            if text.count(_MARK) == 1:
                prefix, suffix = text.split(_MARK)
                self._parts = (prefix, suffix)

    def _apply(self, user: str) -> str:
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}
        ]
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def __call__(self, user: str) -> str:
        if self._parts is not None:
            return self._parts[0] + user + self._parts[1]
        if self._tokenizer is not None:
            return self._apply(user)
        return (f"{self.system}\n" if self.system else "") + f"{user}\n"


def sliding_windows(
    sequences: Sequence[np.ndarray], max_history: int = 20, min_history: int = 1
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every (history, next item) pair inside each sequence; history capped at its last ``max_history`` items.

    Pass ``dataset.train_sequences()`` so no validation/test target is ever used. Returns the histories,
    their targets and the index of the sequence each came from.
    """
    histories, targets, owners = [], [], []
    for u, seq in enumerate(sequences):
        for t in range(min_history, len(seq)):
            histories.append(seq[max(0, t - max_history) : t])
            targets.append(int(seq[t]))
            owners.append(u)
    return histories, np.asarray(targets, dtype=np.int64), np.asarray(owners, dtype=np.int64)


def sequence_windows(sequences: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """Each sequence cut into windows of at most ``length`` items, from its end back, covering all of it.

    Whole-sequence examples train every item of a window as a next-item target, so windows do not need
    to overlap: each item is a target exactly once, with up to ``length - 1`` items of context.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    windows = []
    for seq in sequences:
        for end in range(len(seq), 0, -length):
            windows.append(np.asarray(seq[max(0, end - length) : end]))
    return windows


@dataclass
class PromptBuilder:
    """Renders examples for one catalog + SID map. ``sid_strings[i]`` is item i's SID tokens, concatenated."""

    sid_strings: list[str]
    titles: list[str]
    fields: list[dict[str, Any]]
    attributes: list[ItemAttributes]

    @classmethod
    def from_catalog(cls, catalog: Any, sid: Any) -> PromptBuilder:
        if len(sid.codes) != len(catalog):
            raise ValueError(f"SID map has {len(sid.codes)} items but the catalog has {len(catalog)}")
        bands = price_bands_of(catalog)  # the bands the verbalizer and the faithfulness checker use
        return cls(
            sid_strings=["".join(sid.item_tokens(i)) for i in range(len(catalog))],
            titles=[item.title for item in catalog],
            fields=[item.fields for item in catalog],
            attributes=[ItemAttributes.of(item, bands) for item in catalog],
        )

    def seqrec_values(self, history: Sequence[int], target: int | None = None) -> dict[str, Any]:
        items = [{"sid": self.sid_strings[i], "title": self.titles[i]} for i in history]
        values: dict[str, Any] = {"history": ", ".join(it["sid"] for it in items), "items": items}
        if target is not None:
            values["target"] = self.sid_strings[target]
            values["target_title"] = self.titles[target]
        return values

    def sequence_values(self, items: Sequence[int]) -> dict[str, Any]:
        return {"sequence": "".join(self.sid_strings[i] for i in items)}

    def item_values(self, i: int) -> dict[str, Any]:
        f = self.fields[i]
        cats = f.get("categories") or []
        return {
            "title": self.titles[i],
            "brand": f.get("brand") or "",
            "categories": ", ".join(cats) if isinstance(cats, list) else str(cats),
            "target": self.sid_strings[i],
            "sid": self.sid_strings[i],
        }

    def attribute_values(self, i: int) -> dict[str, str]:
        """Item ``i`` as an explanation prompt shows it; attributes the catalog lacks are ``""``."""
        a = self.attributes[i]
        return {
            "sid": self.sid_strings[i],
            "title": a.title,
            "brand": a.brand or "",
            "categories": ", ".join(a.categories),
            "price": a.price_band or "",
        }

    def explanation_values(
        self, history: Sequence[int], item: int, explanation: str | None = None
    ) -> dict[str, Any]:
        """Values of an explanation template: the history items and the recommended ``item`` with their
        catalog attributes, and the answer when training."""
        items = [self.attribute_values(i) for i in history]
        target = self.attribute_values(item)
        values: dict[str, Any] = {
            "history": ", ".join(it["sid"] for it in items),
            "items": items,
            "target": target["sid"],
            **{f"target_{key}": target[key] for key in ("title", "brand", "categories", "price")},
        }
        if explanation is not None:
            values["explanation"] = explanation
        return values

    def next_item_prompt(
        self, template: TaskTemplate, chat: ChatFormat, history: Sequence[int], phrasing: int = 0
    ) -> str:
        """The full prompt a next-item template gives one history, the same for eval examples and inference.

        ``seqrec``: the history in the user turn (an empty one gets the cold-start prompt). ``sequence``: a
        fixed instruction, then the history's SIDs as the start of the answer, which the model continues.
        """
        if template.task == "sequence":
            return chat(template.render_prompt({}, phrasing)) + template.render_answer(
                self.sequence_values(history)
            )
        if len(history) == 0:
            return chat(template.render_cold_start())
        return chat(template.render_prompt(self.seqrec_values(history), phrasing))


def build_sft_examples(
    dataset: Any,
    sid: Any,
    templates: Mapping[str, TaskTemplate],
    mix: Mapping[str, float],
    tokenizer: Any,
    max_history: int = 20,
    seed: int = 0,
    explanations: Sequence[ExplanationExample] | None = None,
) -> dict[str, list]:
    """Prompt/completion columns (plus ``task``) mixing the templates named in ``mix``.

    ``mix[name]`` counts passes over the task's natural example set: all training windows for next-item
    templates, all titled catalog items for alignment templates, all ``explanations`` (the targets of one
    source of :mod:`genrec.prompts.explanations`, needed when the mix has an explanation template).
    ``0.5`` samples half, ``2`` repeats with fresh phrasings. Each example gets a random phrasing of its
    template.
    """
    rng = np.random.default_rng(seed)
    builder = PromptBuilder.from_catalog(dataset.catalog, sid)
    histories, targets, _ = sliding_windows(dataset.train_sequences(), max_history=max_history)
    # a window of max_history + 1 items trains its last item on the same context a seqrec prompt gives
    windows = sequence_windows(dataset.train_sequences(), max_history + 1)
    titled = np.array([i for i, t in enumerate(builder.titles) if t], dtype=np.int64)
    explanations = list(explanations or ())
    out: dict[str, list] = {"prompt": [], "completion": [], "task": []}
    for name, weight in mix.items():
        if weight <= 0:
            continue
        if name not in templates:
            raise TemplateError(f"recipe mixes template {name!r}, but only {sorted(templates)} are loaded")
        template = templates[name]
        fmt = ChatFormat(tokenizer, template.system)
        if template.task == "seqrec":
            pool = np.arange(len(targets))
        elif template.task == "sequence":
            pool = np.arange(len(windows))
        elif template.task in ("item2sid", "sid2item"):
            pool = titled
        elif template.task == "explanation":
            if not explanations:
                raise TemplateError(
                    f"{template.path}: no explanation targets given (explanations=...); build them with a "
                    "source of genrec.prompts.explanations, or set the template's weight to 0"
                )
            pool = np.arange(len(explanations))
        else:
            raise TemplateError(
                f"{template.path}: task {template.task!r} has no training data yet; set its weight to 0"
            )
        whole, frac = int(weight), weight - int(weight)
        chosen = np.concatenate(
            [np.tile(pool, whole), rng.choice(pool, size=int(round(frac * len(pool))), replace=False)]
        ).astype(np.int64)
        phrasings = rng.integers(0, template.num_phrasings, size=len(chosen))
        for j, k in zip(chosen, phrasings):
            if template.task == "seqrec":
                values = builder.seqrec_values(histories[j], int(targets[j]))
            elif template.task == "sequence":
                values = builder.sequence_values(windows[j])
            elif template.task == "explanation":
                example = explanations[j]
                values = builder.explanation_values(example.history, example.item, example.explanation)
            else:
                values = builder.item_values(int(j))
            out["prompt"].append(fmt(template.render_prompt(values, int(k))))
            out["completion"].append(template.render_answer(values))
            out["task"].append(name)
        logger.info("template %s: %d examples", name, len(chosen))
    order = rng.permutation(len(out["prompt"]))
    return {key: [col[i] for i in order] for key, col in out.items()}


def build_eval_examples(
    dataset: Any,
    sid: Any,
    template: TaskTemplate,
    tokenizer: Any,
    split: str = "valid",
    max_history: int = 20,
    max_users: int | None = None,
    phrasing: int = 0,
) -> dict[str, list]:
    """Held-out next-item examples (one per user) for eval loss during training; a fixed phrasing."""
    builder = PromptBuilder.from_catalog(dataset.catalog, sid)
    ex = dataset.examples(split)
    n = len(ex) if max_users is None else min(max_users, len(ex))
    fmt = ChatFormat(tokenizer, template.system)
    prompts, completions = [], []
    for h, t in zip(ex.histories[:n], ex.targets[:n]):
        history = h[-max_history:]
        prompts.append(builder.next_item_prompt(template, fmt, history, phrasing))
        if template.task == "sequence":  # the history starts the answer; the target continues it
            completions.append(builder.sid_strings[int(t)])
        else:
            completions.append(template.render_answer(builder.seqrec_values(history, int(t))))
    return {"prompt": prompts, "completion": completions, "task": [template.name] * n}
