"""Work in recipes is bounded by counts, not time: template loops and output, and
YAML that expands (aliases inside aliases) or nests too far, are refused at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from services import run_quietly

import headrace as hr
from headrace.llm.prompts import PromptError, Template
from headrace.recipe.document import RecipeError

NODES = "nodes:\n  - {id: f, function: json:dumps}\n"


def test_nested_loops_stop_at_the_iteration_bound() -> None:
    nested = "{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}"
    template = Template(nested, where="t")
    with pytest.raises(PromptError, match=r"loops ran more than 1,000,000 times"):
        template.render({"x": list(range(1000))})  # 10^9 iterations unbounded


def test_a_template_stops_at_the_output_bound() -> None:
    template = Template("{% for a in x %}{{ y }}{% endfor %}", where="t")
    with pytest.raises(PromptError, match=r"longer than 10,000,000 characters"):
        template.render({"x": list(range(1000)), "y": "z" * 100_000})


def test_small_loops_render_as_before() -> None:
    template = Template("{% for a in x %}{{ a }}{{ loop.index }} {% endfor %}", where="t")
    assert template.render({"x": ["a", "b"]}) == "a1 b2 "


def billion_laughs(levels: int) -> str:
    text = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels + 1):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    return text


def test_billion_laughs_are_refused_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(9) + NODES)  # 9^10 values if expanded
    with pytest.raises(
        RecipeError, match=r"laughs\.yaml:\d+:\d+: .*expands to more than 100,000 values"
    ):
        hr.recipe.load(path)


@pytest.mark.parametrize(
    # 50,000: deeper than any recursion limit (mypy, run in-process by an earlier test,
    # raises it to 16,384)
    ("depth", "message"),
    [(100, "nest more than 64 levels"), (50_000, "nested too deep to read")],
)
def test_deep_nesting_is_one_clear_line(tmp_path: Path, depth: int, message: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * depth + "]" * depth + "\n" + NODES)
    with pytest.raises(RecipeError, match=message) as refused:
        hr.recipe.load(path)
    assert len(str(refused.value).splitlines()) == 1


def _doubling(step: str) -> str:
    """A string doubled 20 times (100,000 characters to 100 GB), one statement a time:
    a set inside a loop does not outlive its iteration in Jinja."""
    return "{% set a = 'x' * 100000 %}" + step * 20 + "{{ a|length }}"


BOMBS = {
    # each asked for 10-13 GB (a MemoryError under a 3 GiB cap) before it was refused
    "join_separator": ("{{ ([''] * 100000) | join('x' * 100000) }}", "|join would make more than"),
    "tojson_indent": ("{{ (['x'] * 100000) | tojson(indent=100000) }}", "|tojson would make"),
    "concat_list": ("{{ (['x' * 100000] * 100000) ~ '' }}", "a ~ of more than"),
    "print_list": ("{{ ['x' * 100000] * 100000 }}", "a value of more than"),
    "double_with_tilde": (_doubling("{% set a = a ~ a %}"), "a ~ of more than"),
    "double_with_plus": (_doubling("{% set a = a + a %}"), "a + of"),
    "double_with_block_set": (
        _doubling("{% set a %}{{ a }}{{ a }}{% endset %}"),
        "a {% set %} block of more than",
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_before_it_is_built(name: str) -> None:
    source, refusal = BOMBS[name]
    template = Template(source, where="t")
    with pytest.raises(PromptError, match=re.escape(refusal)):
        template.render({})


def test_the_work_of_a_whole_rendering_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A million loop iterations each sorting 100,000 items would run ~42 h: every
    operation charges what it walks to one budget a rendering (lowered here, so the
    test sorts 20 times rather than 500)."""
    monkeypatch.setattr("headrace.sandbox.bounds.MAX_TEMPLATE_WORK", 2_000_000)
    template = Template("{% for i in big %}{{ big|sort|first }}{% endfor %}", where="t")
    with pytest.raises(PromptError, match="more than 2,000,000 items and characters of work"):
        template.render({"big": list(range(100_000))})
    assert Template("{{ big|sort|first }}", where="t").render({"big": [3, 1, 2]}) == "1"


def test_a_refused_condition_is_the_items_dead_letter_naming_the_node(tmp_path: Path) -> None:
    """In a recipe's when:, a bomb is a dead letter naming the node and the bound (it was
    a MemoryError with an empty message)."""
    (tmp_path / "in.jsonl").write_text('{"id": 1, "t": "x"}\n{"id": 2, "t": "y"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "source: {jsonl: in.jsonl, key: id}\n"
        "nodes:\n"
        "  - {id: a, function: json:dumps}\n"
        "  - {id: b, function: json:dumps}\n"
        "edges:\n"
        "  - {from: a, to: b, when: \"(([''] * 100000) | join('x' * 100000) | length) > 1\"}\n"
    )
    loaded = hr.recipe.load(recipe)
    result = run_quietly(loaded.pipeline, loaded.source())
    assert len(result.dead_letters) == 2
    for dead in result.dead_letters:
        assert "|join would make more than 10,000,000 characters" in dead.message
        assert dead.step == "a -> b" and dead.message.startswith("the condition: ")
