"""Prompt templates (YAML + Jinja2 files under ``prompts/``) and the training examples rendered from them."""

from genrec.prompts.examples import (
    ChatFormat,
    PromptBuilder,
    build_eval_examples,
    build_sft_examples,
    sliding_windows,
)
from genrec.prompts.explanations import (
    EXPLANATION_HISTORY,
    ExplanationExample,
    grounded_explanations,
    review_explanations,
)
from genrec.prompts.grounding import verbalize_explanation
from genrec.prompts.templates import (
    TASK_VARIABLES,
    TaskTemplate,
    default_prompt_dir,
    load_template,
    load_templates,
)

__all__ = [
    "EXPLANATION_HISTORY",
    "TASK_VARIABLES",
    "ChatFormat",
    "ExplanationExample",
    "PromptBuilder",
    "TaskTemplate",
    "build_eval_examples",
    "build_sft_examples",
    "default_prompt_dir",
    "grounded_explanations",
    "load_template",
    "load_templates",
    "review_explanations",
    "sliding_windows",
    "verbalize_explanation",
]
