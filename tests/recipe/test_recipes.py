"""Recipes end to end: the same pipeline as Python, sub-recipes, the CLI, and the examples."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import recipe_helpers as helpers
from services import run_quietly

import headrace as hr
from headrace.errors import RecipeError
from headrace.sandbox import Expression
from headrace.sim import serve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADRACE_CACHE_DIR", str(tmp_path / "cache"))


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text)
    return path


def items(n: int) -> Path:
    lines = [orjson.dumps({"id": f"k{i}", "text": f"  item {i}  is here "}) for i in range(n)]
    path = Path("items.jsonl")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


LINE = """
models:
  fast: {model: gpt-4o-mini, base_url: "URL"}
nodes:
  - {id: clean, function: recipe_helpers:clean}
  - id: tone
    llm:
      model: fast
      output: recipe_helpers:Verdict
      instructions: Judge the tone.
      fields: [text]
      pack: 4
    cache: true
    retry: {attempts: 6}
  - {id: label, function: recipe_helpers:label, concurrency: 3}
"""


def test_a_recipe_and_the_same_python_pipeline_have_one_fingerprint_and_one_output() -> None:
    with serve() as sim:
        recipe = hr.load_recipe(write("line.yaml", LINE.replace("URL", sim.url)))
        client = hr.llm.Client(base_url=sim.url, models={"fast": "gpt-4o-mini"})
        python = (
            hr.step(helpers.clean, name="clean")
            >> hr.llm.transduce(
                helpers.Verdict,
                client=client,
                model="fast",
                instructions="Judge the tone.",
                fields=["text"],
                pack=4,
                name="tone",
                cache=True,
                retry=hr.Retry(attempts=6),
            )
            >> hr.step(helpers.label, name="label", concurrency=3)
        )
        assert isinstance(recipe, hr.Sequence)
        assert recipe.fingerprint == python.fingerprint
        records = [{"id": i, "text": f" speech {i} "} for i in range(12)]
        from_recipe = run_quietly(recipe, records, ordered=True).outputs
        from_python = run_quietly(python, records, ordered=True).outputs
    assert from_recipe == from_python and len(from_recipe) == 12


GRAPH = """
nodes:
  - {id: clean, function: recipe_helpers:clean}
  - {id: size, function: recipe_helpers:length}
  - {id: loud, function: recipe_helpers:shout}
  - {id: both, function: recipe_helpers:both}
edges:
  - clean -> [size, loud]
  - {from: size, to: both, when: "size > 12"}
  - loud -> both
"""


def test_a_graph_recipe_matches_its_python_graph() -> None:
    recipe = hr.load_recipe(write("graph.yaml", GRAPH))
    python = hr.graph(
        {
            "clean": hr.step(helpers.clean, name="clean"),
            "size": hr.step(helpers.length, name="size"),
            "loud": hr.step(helpers.shout, name="loud"),
            "both": hr.step(helpers.both, name="both"),
        },
        [
            "clean -> [size, loud]",
            hr.edge("size", "both", when=Expression("size > 12")),
            "loud -> both",
        ],
        name="graph",
    )
    assert recipe.fingerprint == python.fingerprint
    records = [{"id": 0, "text": "a  long   sentence here"}, {"id": 1, "text": "short"}]
    outputs = run_quietly(recipe, records, ordered=True).outputs
    assert outputs == run_quietly(python, records, ordered=True).outputs
    assert outputs == [
        {"parents": ["loud", "size"], "size": 20, "loud": "A LONG SENTENCE HERE"},
        {"parents": ["loud"], "loud": "SHORT"},
    ]


def test_a_decorated_step_keeps_its_code_and_takes_the_node_id() -> None:
    recipe = hr.load_recipe(
        write("d.yaml", "nodes:\n  - {id: flip, function: recipe_helpers:decorated}\n")
    )
    assert isinstance(recipe, hr.FunctionStep)
    assert recipe.name == "flip" and recipe.concurrency == 3
    assert recipe.fingerprint == helpers.decorated.with_options(name="flip").fingerprint


def test_map_with_skip_reduce_route_and_filter_in_one_recipe() -> None:
    recipe = hr.load_recipe(
        write(
            "words.yaml",
            """
nodes:
  - {id: split, function: recipe_helpers:words}
  - id: titled
    map: {do: {function: recipe_helpers:checked}, on_error: skip, concurrency: 2}
  - {id: n, reduce: recipe_helpers:count}
  - id: enough
    filter: "n > 1"
  - id: pick
    route: {on: "n > 2", to: {"True": many}, default: few}
  - {id: many, function: recipe_helpers:label}
  - {id: few, function: recipe_helpers:label}
edges:
  - split -> titled -> n -> enough -> pick
""",
        )
    )
    records = [{"id": 0, "text": "a bad b c"}, {"id": 1, "text": "bad x"}, {"id": 2, "text": "x y"}]
    result = run_quietly(recipe, records, ordered=True)
    assert result.outputs == [{"many": "label:3", "few": None}, {"many": None, "few": "label:2"}]
    assert result.items_filtered == 1  # "bad x" has one good word
    assert result.metrics.step("titled").skipped == 2
    assert result.metrics.step("pick").branches == {"True": 1, "otherwise": 1}


def test_a_sub_recipe_is_a_node_and_includes_share_model_aliases() -> None:
    write("models.yaml", "models:\n  fast: {model: gpt-4o-mini}\n")
    write(
        "inner.yaml",
        "nodes:\n  - {id: clean, function: recipe_helpers:clean}\n"
        "  - {id: size, function: recipe_helpers:length}\n",
    )
    outer = hr.recipe.load(
        write(
            "outer.yaml",
            "include: [models.yaml]\nnodes:\n  - {id: measured, recipe: inner.yaml}\n"
            "  - {id: label, function: recipe_helpers:label}\n",
        )
    )
    assert set(outer.built.aliases) == {"fast"}
    result = run_quietly(outer.pipeline, [{"id": 1, "text": "  a   b "}])
    assert result.outputs == ["label:3"]


def test_overrides_and_the_run_section_reach_the_run() -> None:
    items(30)
    write(
        "r.yaml",
        """
source: {jsonl: items.jsonl, key: id}
sink: {jsonl: out.jsonl}
nodes:
  - {id: clean, function: recipe_helpers:clean}
run: {concurrency: 4}
""",
    )
    recipe = hr.recipe.load("r.yaml", overrides=["run.concurrency=7", "sink.jsonl=other.jsonl"])
    assert recipe.run_options()["window"] == 7
    result = recipe.run(progress=False)
    assert result.items_out == 30
    lines = Path("other.jsonl").read_bytes().splitlines()
    assert len(lines) == 30 and orjson.loads(lines[0])["text"] == "item 0 is here"
    assert (Path(".headrace") / "r").is_dir()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_validates_plans_runs_and_resumes_a_recipe() -> None:
    items(20)
    shutil.copy(Path(helpers.__file__), "recipe_helpers.py")
    write(
        "r.yaml",
        "source: {jsonl: items.jsonl, key: id}\nsink: {jsonl: out.jsonl}\n"
        "nodes:\n  - {id: clean, function: recipe_helpers:clean}\n"
        "  - {id: size, function: recipe_helpers:length}\n",
    )
    ok = cli("validate", "r.yaml")
    assert ok.returncode == 0 and "r.yaml: ok, recipe 'r': 2 nodes, 1 edges" in ok.stdout
    bad = cli("validate", "r.yaml", "--set", "nodes.size.concurency=2")
    assert bad.returncode == 1
    assert "--set nodes.size.concurency=2: nodes[1].concurency: unknown key (did you mean " in (
        bad.stderr
    )
    plan = cli("run", "r.yaml", "--dry-run", "--set", "run.concurrency=16")
    assert plan.returncode == 0 and "20 items" in plan.stdout and "no requests" in plan.stdout
    assert not Path("out.jsonl").exists()
    done = cli("run", "r.yaml")
    assert done.returncode == 0, done.stderr
    assert len(Path("out.jsonl").read_text().splitlines()) == 20
    again = cli("resume", ".headrace/r")
    assert again.returncode == 0 and "skipped 20 finished before" in again.stdout
    refused = cli("run", "r.yaml", "--window", "3")
    assert refused.returncode == 2 and "--set run.concurrency" in refused.stderr


def test_allow_keeps_a_recipe_from_importing_other_modules() -> None:
    write("r.yaml", "nodes:\n  - {id: x, function: os.path:join}\n")
    assert cli("validate", "r.yaml").returncode == 0
    refused = cli("validate", "r.yaml", "--allow", "mypkg")
    assert refused.returncode == 1
    assert "module 'os.path' is not allowed here (--allow mypkg)" in refused.stderr


def run_example(name: str, recipe: str, *overrides: str) -> list[dict[str, Any]]:
    out = Path("out.jsonl").resolve()
    with serve() as sim:
        loaded = hr.recipe.load(
            EXAMPLES / name / recipe,
            overrides=[*(o.replace("URL", sim.url) for o in overrides), f"sink.jsonl={out}"],
            allow_paths=[out.parent],
        )
        result = loaded.run(progress=False)
    assert result.items_dead == 0, result.dead_letters[:1]
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_the_content_example_runs_with_its_condition() -> None:
    rows = run_example(
        "content",
        "content.yaml",
        "models.writer.base_url=URL",
        "models.editor.base_url=URL",
    )
    assert len(rows) == 6
    assert {r["revised"] for r in rows} <= {True, False}
    assert all(r["revised"] == (r["verdict"] == "revise") for r in rows)


def test_the_transduction_example_runs_packed_and_filtered() -> None:
    rows = run_example("transduce", "transduce.yaml", "models.reader.base_url=URL")
    assert 0 < len(rows) <= 40
    assert all(r["category"] != "other" for r in rows)
    assert set(rows[0]) == {"name", "category", "price_usd", "in_stock"}


@pytest.mark.slow
def test_the_sotu_example_runs_local_models_and_the_judge() -> None:
    pytest.importorskip("sentence_transformers", reason="the models extra is not installed")
    out = Path("paragraphs").resolve()
    with serve() as sim:
        loaded = hr.recipe.load(
            EXAMPLES / "sotu" / "sotu.yaml",
            overrides=[f"models.judge.base_url={sim.url}", f"sink.parquet={out}"],
            allow_paths=[out.parent],
        )
        result = loaded.run(progress=False)
    assert result.items_out == 48 and result.items_dead == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == 48
    assert {"theme", "sentiment", "tone", "decade"} <= set(table.column_names)


def test_the_run_section_names_the_ray_workers_and_their_gpus() -> None:
    write(
        "r.yaml",
        """
source: {jsonl: items.jsonl, key: id}
sink: {jsonl: out.jsonl}
nodes:
  - {id: clean, function: recipe_helpers:clean}
run: {backend: ray, workers: 3, shard_size: 40, num_gpus: 0.5}
""",
    )
    backend = hr.recipe.load("r.yaml").run_options()["backend"]
    assert (backend.workers, backend.shard_size, backend.num_gpus) == (3, 40, 0.5)
    with pytest.raises(RecipeError, match="num_gpus"):
        hr.recipe.load("r.yaml", overrides=["run.num_gpus=-1"])
