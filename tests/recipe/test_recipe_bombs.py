"""Work in recipes is bounded by counts, not time: template loops and output, and
YAML that expands (aliases inside aliases) or nests too far, are refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest

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
