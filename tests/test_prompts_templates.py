"""Template files: the shipped ones validate and render; broken ones fail naming the file and phrasing."""

from __future__ import annotations

import textwrap

import pytest

from genrec.errors import TemplateError
from genrec.prompts import TASK_VARIABLES, default_prompt_dir, load_template, load_templates

GOOD = """
task: seqrec
system: Short system.
variables: [history]
optional: [items]
answer: "{{ target }}"
phrasings:
  - "History: {{ history }}. Next?"
  - "{% for it in items %}{{ it.sid }} ({{ it.title }}) {% endfor %}then {{ history }}?"
cold_start: "New user. Recommend something."
"""


def write(tmp_path, text: str, name: str = "t.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_templates_all_validate_and_cover_every_task():
    templates = load_templates()
    assert {"seqrec", "seqrec_titles", "item2sid", "sid2item", "explanation"} <= set(templates)
    assert {t.task for t in templates.values()} == set(TASK_VARIABLES)
    for t in templates.values():
        assert t.num_phrasings >= 2, t.path
    assert templates["seqrec"].render_cold_start()
    assert default_prompt_dir().name == "prompts"


def test_render_known_answer(tmp_path):
    t = load_template(write(tmp_path, GOOD))
    values = {
        "history": "<a_1><b_2>, <a_3><b_0>",
        "items": [{"sid": "<a_1><b_2>", "title": "Soap"}, {"sid": "<a_3><b_0>", "title": "Mask"}],
        "target": "<a_2><b_2>",
    }
    assert t.render_prompt(values, 0) == "History: <a_1><b_2>, <a_3><b_0>. Next?"
    assert t.render_prompt(values, 3) == "<a_1><b_2> (Soap) <a_3><b_0> (Mask) then <a_1><b_2>, <a_3><b_0>?"
    assert t.render_answer(values) == "<a_2><b_2>"
    assert t.render_cold_start() == "New user. Recommend something."
    assert t.name == "t" and t.system == "Short system."


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            '"History: {{ history }}. Next?"',
            '"History: {{ history }. Next?"',
            "phrasing 0, line 1: syntax error",
        ),
        (
            '"History: {{ history }}. Next?"',
            '"History: {{ history }} {{ colour }}"',
            "phrasing 0: unknown variable",
        ),
        ('"History: {{ history }}. Next?"', '"No history here"', "phrasing 0: missing required variable"),
        ("variables: [history]", "variables: [history, price]", "not available to task 'seqrec'"),
        ("task: seqrec", "task: fortune", "unknown task 'fortune'"),
        ('answer: "{{ target }}"', 'answer: "{{ secret }}"', "answer: unknown variable"),
        ('cold_start: "New user. Recommend something."', 'cold_start: "{{ history }}"', "cold_start"),
        ("system: Short system.", "sytem: Short system.", "unknown key(s) ['sytem']"),
        ("phrasings:", "phrasing:", "missing required key(s) ['phrasings']"),
    ],
)
def test_invalid_template_names_file_and_problem(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new), "broken.yaml")
    with pytest.raises(TemplateError) as err:
        load_template(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_template(write(tmp_path, "task: [unclosed"))
    with pytest.raises(TemplateError, match="not found"):
        load_templates(tmp_path, names=["nope"])


def test_render_time_errors_are_template_errors(tmp_path):
    t = load_template(write(tmp_path, GOOD))
    with pytest.raises(TemplateError, match="phrasing 0"):
        t.render_prompt({}, 0)  # strict undefined: a missing value is an error, not an empty string
    sneaky = GOOD.replace('"History: {{ history }}. Next?"', '"{{ history.__class__.__mro__ }}"')
    t = load_template(write(tmp_path, sneaky, "sneaky.yaml"))
    with pytest.raises(TemplateError):  # sandboxed: no access to Python internals
        t.render_prompt({"history": "x", "items": []}, 0)


def test_only_seqrec_has_cold_start(tmp_path):
    text = """
    task: sid2item
    variables: [sid]
    answer: "{{ title }}"
    phrasings: ["Title of {{ sid }}?"]
    cold_start: "hi"
    """
    with pytest.raises(TemplateError, match="only applies to seqrec"):
        load_template(write(tmp_path, text))


EXPLANATION = """
task: explanation
variables: []
optional: [items, target_title, target_brand, target_price]
answer: "{{ explanation }}"
phrasings:
  - "Bought: {% for it in items %}{{ it.title }} ({{ it.price }}); {% endfor %}Why {{ target_title }}?"
  - "Why {{ target_title }}{% if target_brand %} by {{ target_brand }}{% endif %} after {{ items[-1].title }}"
"""


def test_explanation_template_renders_item_attributes(tmp_path):
    t = load_template(write(tmp_path, EXPLANATION))
    values = {
        "items": [{"sid": "<a_1>", "title": "Soap", "brand": "", "categories": "", "price": "budget"}],
        "target_title": "Mask",
        "target_brand": "Acme",
        "target_price": "",
        "explanation": "It is a mask from Acme.",
    }
    assert t.render_prompt(values, 0) == "Bought: Soap (budget); Why Mask?"
    assert t.render_prompt(values, 1) == "Why Mask by Acme after Soap"
    assert t.render_answer(values) == "It is a mask from Acme."
    shipped = load_templates(names=["explanation"])["explanation"]
    assert shipped.task == "explanation" and {"items", "target_title"} <= set(shipped.variables)


@pytest.mark.parametrize(
    "old, new, message",
    [  # a prompt that never names the recommended item, or never shows the history, cannot be explained from
        (
            "Why {{ target_title }}?",
            "Why this?",
            "phrasing 0: a prompt of task 'explanation' must use one of ['target',",
        ),
        (
            "after {{ items[-1].title }}",
            "after all",
            "phrasing 1: a prompt of task 'explanation' must use one of ['hist",
        ),
        ('answer: "{{ explanation }}"', 'answer: "You will love it."', "must use one of the task's answer"),
        ("target_brand, target_price]", "target_brand, rating]", "not available to task 'explanation'"),
    ],
)
def test_explanation_template_without_required_variables_fails_on_load(tmp_path, old, new, message):
    assert old in EXPLANATION
    path = write(tmp_path, EXPLANATION.replace(old, new), "explain.yaml")
    with pytest.raises(TemplateError) as err:
        load_template(path)
    assert str(path) in str(err.value) and message in str(err.value)
