"""Item text templates: default rendering, absent fields, custom templates and clear errors."""

from __future__ import annotations

import pytest

from genrec.data.dataset import Catalog, Item
from genrec.embed import ItemTextTemplate, render_item_texts
from genrec.errors import TemplateError

FULL = Item(
    "1",
    "Rose Lipstick",
    {"brand": "OPI", "categories": ["Beauty", "Makeup"], "price": 12.5, "description": "Long lasting."},
)


def test_default_template_renders_every_present_field():
    (text,) = render_item_texts([FULL])
    assert text == (
        "Rose Lipstick. Brand: OPI. Categories: Beauty > Makeup. Price: $12.50. Description: Long lasting."
    )


def test_absent_and_empty_fields_are_skipped():
    items = [Item("2", "Soap"), Item("3", "Gel", {"brand": "", "categories": "Hair", "price": None})]
    assert render_item_texts(Catalog(items)) == ["Soap", "Gel. Categories: Hair"]


def test_custom_template_sees_fields_and_collapses_whitespace():
    template = "{{ title | upper }}\n  ({{ fields.brand }}) {{ id }}"
    assert render_item_texts([FULL], template) == ["ROSE LIPSTICK (OPI) 1"]


def test_absent_known_field_prints_as_nothing():
    assert render_item_texts([Item("2", "Soap")], "{{ title }} ({{ brand }})") == ["Soap ()"]


def test_template_from_file(tmp_path):
    path = tmp_path / "item.j2"
    path.write_text("{{ title }} by {{ brand }}", encoding="utf-8")
    assert ItemTextTemplate.from_file(path).render(FULL) == "Rose Lipstick by OPI"


def test_undefined_variable_names_item_and_variable():
    with pytest.raises(TemplateError, match=r"item '1'.*'colour' is undefined"):
        render_item_texts([FULL], "{{ title }} {{ colour }}")


def test_syntax_error_names_line():
    with pytest.raises(TemplateError, match=r":2: template syntax error"):
        ItemTextTemplate("{{ title }}\n{% if brand %}no end")


def test_sandbox_blocks_unsafe_attribute_access():
    with pytest.raises(TemplateError, match="unsafe|undefined"):
        render_item_texts([FULL], "{{ title.__class__.__mro__[1].__subclasses__() }}")


def test_bad_template_type():
    with pytest.raises(TypeError, match="template"):
        render_item_texts([FULL], 42)  # type: ignore[arg-type]
