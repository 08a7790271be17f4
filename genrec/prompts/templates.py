"""Task templates: Jinja2 phrasings in YAML files under ``prompts/`` that users edit without touching code.

One file per template, LC-Rec style::

    task: seqrec                  # which kind of example the code builds for it (fixes the variables)
    system: You are a recommender.   # optional system message (short prompts train faster)
    variables: [history]          # every phrasing must use these
    optional: [items]             # phrasings may use these
    answer: "{{ target }}"        # the completion
    phrasings: ["... {{ history }} ...", ...]
    cold_start: "..."             # seqrec only: the prompt for a user with no history

A ``sequence`` template trains on whole item sequences: its answer renders the user's items and must end
with ``{{ sequence }}``, so inference can render the history there and let the model continue it.

Files are validated when loaded, so a typo fails at startup with the file and phrasing named, not halfway
through training. Rendering runs in a :class:`~jinja2.sandbox.SandboxedEnvironment` with strict undefined
variables, because template files are user input.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from genrec.errors import TemplateError

# The variables the example builders supply for each kind of task. Answer-only variables are listed too:
# a phrasing may not use them (that would leak the answer), the answer template may.
TASK_VARIABLES: dict[str, dict[str, frozenset[str]]] = {
    "seqrec": {
        "prompt": frozenset({"history", "items"}),
        "answer": frozenset({"target", "target_title"}),
    },
    "item2sid": {
        "prompt": frozenset({"title", "brand", "categories"}),
        "answer": frozenset({"target"}),
    },
    "sid2item": {
        "prompt": frozenset({"sid"}),
        "answer": frozenset({"title", "brand"}),
    },
    "sequence": {
        "prompt": frozenset(),
        "answer": frozenset({"sequence"}),
    },
    "explanation": {
        # items: recent history items as {sid, title, brand, categories, price} (price is a band name);
        # target_*: the recommended item's attributes, "" when the catalog lacks them
        "prompt": frozenset(
            {
                "history",
                "items",
                "target",
                "target_title",
                "target_brand",
                "target_categories",
                "target_price",
            }
        ),
        "answer": frozenset({"explanation"}),
    },
}
# Each phrasing of a task must use at least one variable of every group: an explanation prompt that never
# shows the history or never names the recommended item cannot be explained from.
TASK_REQUIRED: dict[str, tuple[frozenset[str], ...]] = {
    "explanation": (frozenset({"history", "items"}), frozenset({"target", "target_title"})),
}
_KEYS = {"task", "description", "system", "variables", "optional", "answer", "phrasings", "cold_start"}
_REQUIRED_KEYS = ("task", "variables", "answer", "phrasings")


def default_prompt_dir() -> Path:
    """``$GENREC_PROMPTS`` if set, else the repository's ``prompts/`` (installed wheels carry a copy)."""
    env = os.environ.get("GENREC_PROMPTS")
    return Path(env) if env else (Path(__file__).parent / "builtin").resolve()


_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """Compile each template source once; rendering 100k examples must not recompile 100k times."""
    return _ENV.from_string(source)


@dataclass(frozen=True)
class TaskTemplate:
    """A validated template file. ``name`` is the file stem; recipes refer to templates by it."""

    name: str
    task: str
    path: str
    variables: tuple[str, ...]
    optional: tuple[str, ...]
    answer: str
    phrasings: tuple[str, ...]
    system: str | None = None
    description: str = ""
    cold_start: str | None = None

    @property
    def num_phrasings(self) -> int:
        return len(self.phrasings)

    def render_prompt(self, values: Mapping[str, Any], phrasing: int = 0) -> str:
        """The user turn for one example; ``phrasing`` indexes :attr:`phrasings` (modulo their number)."""
        k = phrasing % len(self.phrasings)
        return self._render(self.phrasings[k], values, f"phrasing {k}")

    def render_answer(self, values: Mapping[str, Any]) -> str:
        return self._render(self.answer, values, "answer")

    def render_cold_start(self) -> str:
        if self.cold_start is None:
            raise TemplateError(f"{self.path}: template {self.name!r} has no cold_start prompt")
        return self._render(self.cold_start, {}, "cold_start")

    def _render(self, source: str, values: Mapping[str, Any], where: str) -> str:
        try:
            return _compiled(source).render(**values).strip()
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self.path}: {where}: {type(e).__name__}: {e}") from e


def _variables_of(source: str, path: str, where: str) -> set[str]:
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{path}: {where}, line {e.lineno}: syntax error: {e.message}") from e
    return set(meta.find_undeclared_variables(ast))


def _string_list(raw: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TemplateError(f"{path}: {key!r} must be a list of strings")
    return tuple(value)


def load_template(path: str | Path) -> TaskTemplate:
    """Parse and validate one template file; every problem raises :class:`TemplateError` naming the file."""
    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TemplateError(f"{where}: not valid YAML: {e}") from e
    except OSError as e:
        raise TemplateError(f"{where}: cannot read template file: {e}") from e
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: a template file must be a YAML mapping")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise TemplateError(f"{where}: missing required key(s) {missing}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    task = raw["task"]
    if task not in TASK_VARIABLES:
        raise TemplateError(f"{where}: unknown task {task!r}; known tasks: {sorted(TASK_VARIABLES)}")
    supplied = TASK_VARIABLES[task]
    variables, optional = _string_list(raw, "variables", where), _string_list(raw, "optional", where)
    declared = set(variables) | set(optional)
    not_supplied = sorted(declared - supplied["prompt"])
    if not_supplied:
        raise TemplateError(
            f"{where}: variable(s) {not_supplied} are not available to task {task!r} prompts; "
            f"available: {sorted(supplied['prompt'])}"
        )
    phrasings = _string_list(raw, "phrasings", where)
    if not phrasings:
        raise TemplateError(f"{where}: 'phrasings' must hold at least one phrasing")
    for k, phrasing in enumerate(phrasings):
        used = _variables_of(phrasing, where, f"phrasing {k}")
        if used - declared:
            raise TemplateError(
                f"{where}: phrasing {k}: unknown variable(s) {sorted(used - declared)}; "
                f"declared: {sorted(declared)}"
            )
        if set(variables) - used:
            raise TemplateError(
                f"{where}: phrasing {k}: missing required variable(s) {sorted(set(variables) - used)}"
            )
        for group in TASK_REQUIRED.get(task, ()):
            if not used & group:
                raise TemplateError(
                    f"{where}: phrasing {k}: a prompt of task {task!r} must use one of {sorted(group)}"
                )
    answer = raw["answer"]
    if not isinstance(answer, str):
        raise TemplateError(f"{where}: 'answer' must be a string template")
    answer_vars = supplied["prompt"] | supplied["answer"]
    used = _variables_of(answer, where, "answer")
    if used - answer_vars:
        raise TemplateError(f"{where}: answer: unknown variable(s) {sorted(used - answer_vars)}")
    if not used & supplied["answer"]:  # a constant answer would train the same text for every example
        raise TemplateError(
            f"{where}: answer: must use one of the task's answer variables {sorted(supplied['answer'])}"
        )
    if task == "sequence" and not _compiled(answer).render(sequence="\x00").rstrip().endswith("\x00"):
        # inference renders the history into the answer and lets the model continue after it
        raise TemplateError(f"{where}: answer: a sequence template's answer must end with {{{{ sequence }}}}")
    cold_start = raw.get("cold_start")
    if cold_start is not None:
        if task != "seqrec":
            raise TemplateError(f"{where}: 'cold_start' only applies to seqrec templates")
        used = _variables_of(str(cold_start), where, "cold_start")
        if used:
            raise TemplateError(
                f"{where}: cold_start: a cold-start prompt has no variables, found {sorted(used)}"
            )
    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        raise TemplateError(f"{where}: 'system' must be a string")
    return TaskTemplate(
        name=path.stem,
        task=task,
        path=where,
        variables=variables,
        optional=optional,
        answer=answer,
        phrasings=phrasings,
        system=system,
        description=str(raw.get("description", "")),
        cold_start=None if cold_start is None else str(cold_start),
    )


def load_templates(
    folder: str | Path | None = None, names: Iterable[str] | None = None
) -> dict[str, TaskTemplate]:
    """Templates by name from ``folder`` (default :func:`default_prompt_dir`); all ``*.yaml`` by default."""
    folder = Path(folder) if folder is not None else default_prompt_dir()
    if not folder.is_dir():
        raise TemplateError(f"{folder}: prompt template folder not found")
    if names is None:
        paths = sorted(folder.glob("*.yaml"))
    else:
        paths = [folder / f"{name}.yaml" for name in names]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise TemplateError(f"template file(s) not found: {absent}")
    return {p.stem: load_template(p) for p in paths}
