"""Item text for embedding: an editable Jinja2 template rendered in a sandbox.

The text an item is embedded from decides which items end up close in embedding space (and so share
semantic-ID prefixes), so it is a template users can edit rather than hard-coded string formatting.
Absent fields render as nothing; a misspelt variable is an error, never a silent empty string.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from genrec.data.dataset import TEXT_FIELDS, Catalog, Item
from genrec.errors import TemplateError

DEFAULT_ITEM_TEMPLATE = (
    "{{ title }}"
    "{% if brand %}. Brand: {{ brand }}{% endif %}"
    "{% if categories %}. Categories: {{ categories | join(' > ') }}{% endif %}"
    "{% if price is not none and price != '' %}. Price: {{ price | money }}{% endif %}"
    "{% if description %}. Description: {{ description }}{% endif %}"
)


def _money(value: Any) -> str:
    """``12.5 -> "$12.50"``; strings (already formatted by the source) pass through."""
    if isinstance(value, (int, float)):
        return f"${value:.2f}"
    return str(value)


class ItemTextTemplate:
    """A compiled item template. Variables: ``id``, ``title``, ``image``, ``fields`` and every field by name.

    The text fields templates know about (brand, categories, price, description) are always defined
    (``None`` when the item lacks them), so templates can test them with ``{% if brand %}``; any other
    name must exist in the item's fields or rendering raises :class:`~genrec.errors.TemplateError`.
    """

    def __init__(self, source: str = DEFAULT_ITEM_TEMPLATE, name: str = "<item template>"):
        self.source = source
        self.name = name
        env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            finalize=lambda value: "" if value is None else value,  # absent fields print as nothing
        )
        env.filters["money"] = _money
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{name}:{exc.lineno}: template syntax error: {exc.message}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ItemTextTemplate:
        path = Path(path)
        return cls(path.read_text(encoding="utf-8"), name=str(path))

    @staticmethod
    def context(item: Item) -> dict[str, Any]:
        ctx: dict[str, Any] = {name: None for name in TEXT_FIELDS}
        ctx.update(item.fields)
        if "categories" in item.fields:
            ctx["categories"] = item.categories
        ctx.update(id=item.id, title=item.title, image=item.image, fields=dict(item.fields))
        return ctx

    def render(self, item: Item) -> str:
        try:
            text = self._template.render(self.context(item))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.name}: item {item.id!r}: {exc.message}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{self.name}: item {item.id!r}: unsafe template operation: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"{self.name}: item {item.id!r}: {exc}") from None
        return " ".join(text.split())

    def render_all(self, items: Iterable[Item]) -> list[str]:
        return [self.render(item) for item in items]


def as_template(template: str | ItemTextTemplate | None) -> ItemTextTemplate:
    """``None`` -> the default template; a string is template *source* (use ``from_file`` for paths)."""
    if template is None:
        return ItemTextTemplate()
    if isinstance(template, ItemTextTemplate):
        return template
    if isinstance(template, str):
        return ItemTextTemplate(template)
    raise TypeError(f"template must be a str or ItemTextTemplate, got {type(template).__name__}")


def render_item_texts(
    catalog: Catalog | Iterable[Item], template: str | ItemTextTemplate | None = None
) -> list[str]:
    """The text each item is embedded from, in catalog order."""
    return as_template(template).render_all(catalog)
