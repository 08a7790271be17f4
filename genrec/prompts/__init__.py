"""Prompt templates (YAML + Jinja2 files under ``prompts/``) and the training examples rendered from them."""

from genrec.prompts.examples import (
    ChatFormat,
    PromptBuilder,
    build_eval_examples,
    build_sft_examples,
    sliding_windows,
)
from genrec.prompts.templates import (
    TASK_VARIABLES,
    TaskTemplate,
    default_prompt_dir,
    load_template,
    load_templates,
)

__all__ = [
    "TASK_VARIABLES",
    "ChatFormat",
    "PromptBuilder",
    "TaskTemplate",
    "build_eval_examples",
    "build_sft_examples",
    "default_prompt_dir",
    "load_template",
    "load_templates",
    "sliding_windows",
]
