"""Keeping the input's fields next to a step's output: hr.with_input and keep_input:."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.recipe import Recipe
from headrace.sim import serve


class Info(BaseModel):
    kind: Literal["library", "tool"]
    keywords: list[str]


@dataclasses.dataclass
class Size:
    chars: int


@hr.step
def size(record: dict[str, Any]) -> Size:
    return Size(len(record["text"]))


RECORDS = [{"id": n, "text": f"package {n}"} for n in range(6)]


def test_an_llm_steps_fields_are_added_to_the_record() -> None:
    with serve() as sim:
        llm = hr.llm.Client(base_url=sim.url)
        classify = hr.llm.transduce(Info, client=llm, model="m", fields=["text"])
        result = run_quietly(hr.with_input(classify), RECORDS, ordered=True)
    assert result.items_out == 6
    for record, out in zip(RECORDS, result.outputs, strict=True):
        assert set(out) == {"id", "text", "kind", "keywords"}
        assert (out["id"], out["text"]) == (record["id"], record["text"])
        assert out["kind"] in ("library", "tool") and isinstance(out["keywords"], list)


def test_dataclasses_dicts_and_a_named_field() -> None:
    outputs = run_quietly(hr.with_input(size), RECORDS[:1]).outputs
    assert outputs == [{"id": 0, "text": "package 0", "chars": 9}]
    named = hr.with_input(lambda r: r["text"].upper(), field="loud")
    assert run_quietly(named, RECORDS[:1]).outputs == [
        {"id": 0, "text": "package 0", "loud": "PACKAGE 0"}
    ]
    # a field the output shares with the record takes the output's value
    replaced = hr.with_input(lambda r: {"text": "new"})
    assert run_quietly(replaced, RECORDS[:1]).outputs == [{"id": 0, "text": "new"}]


def test_what_cannot_be_kept_is_a_dead_letter_saying_why() -> None:
    result = run_quietly(hr.with_input(lambda r: 3), RECORDS[:1])
    assert "name the field to put it in with with_input(step, field='...')" in (
        result.dead_letters[0].message
    )
    result = run_quietly(hr.with_input(size), ["not a record"])
    assert "with_input keeps the fields of a record (a dict), got str" in (
        result.dead_letters[0].message
    )
    with pytest.raises(hr.PipelineError, match="with_input field must be a field name"):
        hr.with_input(size, field="")


def test_a_recipe_node_keeps_its_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS) + b"\n")
    with serve() as sim:
        (tmp_path / "keep.yaml").write_text(
            f"""
source: {{jsonl: items.jsonl, key: id}}
sink: {{jsonl: out.jsonl}}
models:
  fast: {{model: m, base_url: "{sim.url}"}}
nodes:
  - id: classify
    llm: {{model: fast, output: "first_jobs:Info", fields: [text]}}
    keep_input: true
"""
        )
        recipe = Recipe(tmp_path / "keep.yaml")
        result = run_quietly(recipe.pipeline, recipe.source(), sink=recipe.sink(), run_dir="run")
    assert result.items_out == 6
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert all(set(row) == {"id", "text", "kind", "keywords"} for row in rows)


def test_keep_input_on_a_filter_is_a_recipe_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("nodes:\n  - {id: f, filter: 'n > 1', keep_input: true}\n")
    with pytest.raises(hr.recipe.RecipeError, match="keep_input does not apply to a filter node"):
        hr.load_recipe(tmp_path / "bad.yaml")
