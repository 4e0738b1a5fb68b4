"""Template LLM steps on Ray: a Jinja prompt, a transduction and a recipe condition are
compiled where they land (a compiled Jinja template does not unpickle), and the check
before a run unpickles the pipeline in a fresh process, not only pickles it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.errors import PipelineError
from headrace.llm.prompts import Template
from headrace.sandbox import Expression
from headrace.sim import serve

pytestmark = pytest.mark.slow

ITEMS = 20


class Out(BaseModel):
    """What the transduction reads out of each record."""

    summary: str
    words: int


def _records() -> list[dict[str, Any]]:
    return [{"id": i, "text": f"text {i}", "kind": "ab"[i % 2]} for i in range(ITEMS)]


def _rows(path: Path) -> dict[Any, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["id"]: row for row in rows}


def test_templates_and_expressions_unpickle_and_render_the_same() -> None:
    template = Template("Summarise {{ text | upper }} ({{ kind }})", where="step 't'")
    again = pickle.loads(pickle.dumps(template))
    assert again.render({"text": "x", "kind": "k"}) == template.render({"text": "x", "kind": "k"})
    condition = Expression("tone.label == 'pos'", where="condition")
    assert pickle.loads(pickle.dumps(condition))({"tone": {"label": "pos"}}) is True


@pytest.mark.parametrize("kind", ["transduce", "complete"])
def test_a_template_llm_step_runs_on_ray_and_equals_the_local_run(
    local_ray: None, tmp_path: Path, kind: str
) -> None:
    with serve(process=True) as sim:
        client = hr.llm.Client(base_url=sim.url)
        if kind == "transduce":
            step: hr.Step[Any, Any] = hr.llm.transduce(
                Out, client=client, model="m", fields=["text"], pack=4
            )
        else:
            step = hr.llm.complete(
                client=client, model="m", prompt="Say {{ text | upper }} as {{ kind }}"
            )
        step = hr.with_input(step, field="answer")
        results = {}
        for backend in ("local", "ray"):
            out = tmp_path / f"{backend}.jsonl"
            result = run_quietly(
                step,
                _records(),
                key="id",
                sink=hr.write_jsonl(out),
                run_dir=tmp_path / f"run-{backend}",
                backend=hr.Ray(workers=1) if backend == "ray" else None,
            )
            assert result.items_dead == 0
            results[backend] = _rows(out)
    assert len(results["ray"]) == ITEMS
    assert results["ray"] == results["local"]


class _Fragile:
    """Pickles, but fails to unpickle (as a compiled Jinja template did)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_refuse_to_load, ())


def _refuse_to_load() -> None:
    raise TypeError("__new__() missing 1 required positional argument: 'source'")


def test_a_pipeline_that_pickles_but_does_not_unpickle_is_refused_by_name(
    tmp_path: Path,
) -> None:
    fragile = _Fragile()

    @hr.step(name="plain")
    def plain(item: dict[str, Any]) -> dict[str, Any]:
        return item

    @hr.step(name="holder")
    def holder(item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "held": repr(fragile)}

    with pytest.raises(PipelineError, match=r"step 'holder' .*cannot be unpickled.*'source'"):
        run_quietly(
            plain >> holder,
            _records(),
            key="id",
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            backend=hr.Ray(workers=1),
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written
