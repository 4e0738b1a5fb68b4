"""Every kind of step, through both backends, into every sink kind, with both stores.

The dimensions: four pipelines that between them hold every kind of step
(``matrix_pipelines``: functions sync, async, on a thread, in a process, batched;
LLM ``complete`` with a Jinja prompt on the flex tier (capacity refusals drawn),
``transduce`` packed with repair, a cascade;
a local embedding and VADER; a recipe graph with a condition, a map and a
sub-recipe), two backends (local, Ray with 2 workers), five sinks (JSON Lines,
CSV, Parquet, batch files, a PostgreSQL table) and two run stores (SQLite,
PostgreSQL). All 80 combinations would take too long; :data:`CELLS` is a covering
design: every pair of values of any two dimensions is in at least one cell (20
cells; a test checks the covering).

Each cell checks: the same outputs as the local SQLite run of the same pipeline
into the same kind of sink (the same rows, floats to 1e-5, and the same column
types), and ``headrace status`` and ``headrace report`` read the run without error
and agree with its summary. The cells marked ``kill`` run in a subprocess that is
SIGKILLed once output appears, then resumed: each key reaches the sink once.

Run all of it with ``pytest tests/matrix`` (2 min 50 s on 2 cores, measured; it
is marked slow, so ``-m "not slow"`` skips it).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matrix_pipelines
import pyarrow.parquet as pq
import pytest
from services import run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.sim import serve

# a Ray cell of the model pipeline took 209 s with the machine's two cores kept busy (11 s
# quiet): a hang still fails, a loaded machine does not
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ITEMS = 48
HERE = Path(__file__).resolve().parent

PIPELINES = ("functions", "llm", "models", "graph")
BACKENDS = ("local", "ray")
SINKS = ("jsonl", "csv", "parquet", "batches", "table")
STORES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Cell:
    """One combination, and whether it is killed and resumed."""

    pipeline: str
    sink: str
    backend: str
    store: str
    kill: bool = False

    @property
    def name(self) -> str:
        return f"{self.pipeline}-{self.sink}-{self.backend}-{self.store}" + (
            "-kill" if self.kill else ""
        )


CELLS = [
    Cell("functions", "jsonl", "local", "sqlite"),
    Cell("functions", "csv", "ray", "postgresql"),
    Cell("functions", "parquet", "local", "postgresql", kill=True),
    Cell("functions", "batches", "ray", "sqlite"),
    Cell("functions", "table", "local", "sqlite"),
    Cell("llm", "jsonl", "ray", "postgresql"),
    Cell("llm", "csv", "local", "sqlite", kill=True),
    Cell("llm", "parquet", "ray", "sqlite"),
    Cell("llm", "batches", "local", "postgresql"),
    Cell("llm", "table", "ray", "postgresql"),
    Cell("models", "jsonl", "local", "postgresql"),
    Cell("models", "csv", "ray", "sqlite"),
    Cell("models", "parquet", "ray", "postgresql"),
    Cell("models", "batches", "local", "sqlite"),
    Cell("models", "table", "ray", "sqlite"),
    Cell("graph", "jsonl", "ray", "sqlite"),
    Cell("graph", "csv", "local", "postgresql"),
    Cell("graph", "parquet", "local", "sqlite"),
    Cell("graph", "batches", "ray", "postgresql"),
    Cell("graph", "table", "local", "postgresql", kill=True),
]

DECLARED = {
    ("models", "parquet"): {"embedding": "list<element: double>"},
    ("functions", "parquet"): {"length": "double", "words": "int64"},
    ("llm", "parquet"): {"gist": "struct<topic: string, score: int64>"},
}
"""Column types the steps declare, which the sink must keep (``with_input(field=)``
passes a step's declared type on: an embedding is a list of doubles, not JSON)."""

SUB_RECIPE = """
paths: ["."]
nodes:
  - {id: join, function: "matrix_pipelines:joined"}
"""

GRAPH_RECIPE = """
name: graph
paths: ["."]
nodes:
  - {id: words, function: "matrix_pipelines:split_words"}
  - {id: long, filter: "words.n > 2"}
  - id: each
    map: {do: {function: "matrix_pipelines:upper"}, over: parts}
  - {id: sub, recipe: sub.yaml}
  - {id: assemble, function: "matrix_pipelines:assemble"}
edges:
  - words -> long -> each -> sub
  - "[words, sub] -> assemble"
"""


def test_the_cells_cover_every_pair_of_values() -> None:
    dimensions = (PIPELINES, SINKS, BACKENDS, STORES)
    for (a, values_a), (b, values_b) in itertools.combinations(enumerate(dimensions), 2):
        seen = {(_values(cell)[a], _values(cell)[b]) for cell in CELLS}
        assert seen == set(itertools.product(values_a, values_b)), (a, b)
    assert len({(c.pipeline, c.sink) for c in CELLS}) == len(CELLS)


def _values(cell: Cell) -> tuple[str, str, str, str]:
    return (cell.pipeline, cell.sink, cell.backend, cell.store)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """One sim for the module, in its own process (Ray workers call it too); a fifth of
    its flex requests are refused for capacity (the summary step is on the flex tier)."""
    with serve(process=True, flex_refusal_rate=0.2) as sim:
        os.environ["MATRIX_SIM_URL"] = sim.url
        matrix_pipelines.llm = matrix_pipelines._llm()  # built again against this sim
        yield sim.url
        os.environ.pop("MATRIX_SIM_URL", None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The input, the graph recipe and its sub-recipe, shared by every cell."""
    folder = tmp_path_factory.mktemp("matrix")
    words = ["river", "mill", "wheel", "water", "stone", "grain"]
    with (folder / "in.jsonl").open("w") as handle:
        for n in range(ITEMS):
            text = "  ".join(words[(n + i) % len(words)] for i in range(2 + n % 4))
            handle.write(json.dumps({"id": f"k{n:03d}", "text": f" {text} "}) + "\n")
    (folder / "sub.yaml").write_text(SUB_RECIPE)
    (folder / "graph.yaml").write_text(GRAPH_RECIPE)
    return folder


_REFERENCE: dict[tuple[str, str], tuple[list[dict[str, Any]], dict[str, str]]] = {}


# -- building and reading a cell --------------------------------------------------------


def _pipeline(kind: str, workspace: Path) -> Any:
    if kind == "graph":
        return hr.recipe.load(workspace / "graph.yaml").pipeline
    return getattr(matrix_pipelines, kind)


def _output(sink: str, folder: Path) -> str:
    """Where a file sink writes (``--output``)."""
    names = {"jsonl": "out.jsonl", "csv": "out.csv", "parquet": "out.parquet"}
    return str(folder / names.get(sink, "batches"))


def _run_dir(folder: Path) -> Path:
    """A cell's run directory, named after its folder's whole path: a PostgreSQL store
    names a run after its directory, so no two cells (or other tests) share one, in
    one test process or two (pytest-xdist's workers number their folders alike)."""
    return folder / f"run-{_unique(folder)}"


def _unique(folder: Path) -> str:
    """A short name for ``folder`` that no other folder of any test process has."""
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


def _sink(sink: str, folder: Path, postgres_url: str, table: str) -> Any:
    if sink == "table":
        return hr.write_sql(postgres_url, table, key="id")
    return hr.io.sink_at(_output(sink, folder))


def _rows(sink: str, folder: Path, postgres_url: str, table: str) -> tuple[list[Any], dict]:
    """The sink's rows (as dicts) and its column types."""
    if sink == "jsonl":
        rows = [json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()]
        return rows, _json_types(rows)
    if sink == "batches":
        rows = [
            json.loads(line)
            for path in sorted((folder / "batches").glob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]
        return rows, _json_types(rows)
    if sink == "csv":
        with (folder / "out.csv").open() as handle:
            reader = csv.DictReader(handle)
            return list(reader), {name: "text" for name in reader.fieldnames or ()}
    if sink == "parquet":
        table_read = pq.read_table(sorted((folder / "out.parquet").glob("*.parquet")))
        types = {field.name: str(field.type) for field in table_read.schema}
        return table_read.to_pylist(), types
    import psycopg

    with psycopg.connect(postgres_url) as db:
        cursor = db.execute(f'SELECT * FROM "{table}"')
        names = [d.name for d in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        types = dict(
            db.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s",
                (table,),
            ).fetchall()
        )
    return rows, types


def _json_types(rows: list[dict[str, Any]]) -> dict[str, str]:
    types: dict[str, str] = {}
    for row in rows:
        for name, value in row.items():
            types.setdefault(name, type(value).__name__)
    return types


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-5 (an embedding's last bits depend on its micro-batch)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str) and a != b and a[:1] in "[{":
        try:  # JSON text of floats (a CSV cell, a json column)
            return _same(json.loads(a), json.loads(b))
        except ValueError:
            return False
    return bool(a == b)


def _by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keyed = {str(row.get("id", row.get("key"))): row for row in rows}
    assert len(keyed) == len(rows), "a key reached the sink twice"
    return keyed


def _run(cell: Cell, folder: Path, workspace: Path, postgres_url: str, table: str) -> Any:
    return run_quietly(
        _pipeline(cell.pipeline, workspace),
        hr.read_jsonl(workspace / "in.jsonl", key="id"),
        sink=_sink(cell.sink, folder, postgres_url, table),
        run_dir=_run_dir(folder),
        run_store=postgres_url if cell.store == "postgresql" else None,
        backend=hr.Ray(workers=2, shard_size=ITEMS // 4) if cell.backend == "ray" else None,
    )


def _reference(
    cell: Cell, workspace: Path, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The local SQLite run of the cell's pipeline into the same kind of sink."""
    key = (cell.pipeline, cell.sink)
    if key not in _REFERENCE:
        folder = tmp_path_factory.mktemp(f"reference-{cell.pipeline}-{cell.sink}")
        table = f"matrix_ref_{cell.pipeline}_{cell.sink}_{os.getpid()}"
        plain = Cell(cell.pipeline, cell.sink, "local", "sqlite")
        result = _run(plain, folder, workspace, postgres_url, table)
        assert result.items_dead == 0
        _REFERENCE[key] = _rows(cell.sink, folder, postgres_url, table)
        _drop(postgres_url, table)
    return _REFERENCE[key]


def _drop(postgres_url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f'DROP TABLE IF EXISTS "{table}"')


def _forget_run(postgres_url: str, name: str) -> None:
    """Delete a run (and its shards' runs) from the test PostgreSQL's run store."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        for store_table in ("runs", "items", "dead", "sessions", "leases"):
            db.execute(
                f"DELETE FROM headrace_{store_table} WHERE run = %s OR run LIKE %s",
                (name, f"{name}.%"),
            )


# -- the cells ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS, ids=[cell.name for cell in CELLS])
def test_a_cell_gives_the_local_runs_outputs_and_reads_back(
    cell: Cell,
    sim_url: str,
    workspace: Path,
    postgres_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    if cell.backend == "ray":
        request.getfixturevalue("local_ray")
    expected_rows, expected_types = _reference(cell, workspace, postgres_url, tmp_path_factory)
    table = f"matrix_{_unique(tmp_path)}"
    run_name = _run_dir(tmp_path).name
    try:
        if cell.kill:
            _killed_then_resumed(cell, tmp_path, workspace, postgres_url, table, sim_url)
            result = None
        else:
            result = _run(cell, tmp_path, workspace, postgres_url, table)
            assert result.items_dead == 0
        rows, types = _rows(cell.sink, tmp_path, postgres_url, table)
        got, want = _by_key(rows), _by_key(expected_rows)
        assert got.keys() == want.keys()
        different = [key for key in got if not _same(got[key], want[key])]
        assert not different, (different[:3], got[different[0]], want[different[0]])
        assert types == expected_types
        for column, kind in DECLARED.get((cell.pipeline, cell.sink), {}).items():
            assert types[column] == kind, column  # a declared type, not JSON text
        assert not list(tmp_path.glob("*.shards"))  # joined, with no dead letter left
        _status_and_report_agree(cell, tmp_path, postgres_url, result, len(rows))
    finally:
        if cell.sink == "table":
            _drop(postgres_url, table)
        if cell.store == "postgresql":
            _forget_run(postgres_url, run_name)


def _status_and_report_agree(
    cell: Cell, folder: Path, postgres_url: str, result: Any, written: int
) -> None:
    store = ["--run-store", postgres_url] if cell.store == "postgresql" else []
    runner = CliRunner()
    status = runner.invoke(app, ["status", str(_run_dir(folder)), *store])
    assert status.exit_code == 0, status.output
    report = runner.invoke(app, ["report", str(_run_dir(folder)), *store])
    assert report.exit_code == 0, report.output
    numbers = dict(
        re.findall(r'data-key="([^"]+)">([^<]*)<', Path(report.output.strip()).read_text())
    )
    filtered = ITEMS - written
    assert numbers["finished"] == f"{ITEMS} of {ITEMS}"
    assert numbers["done"] == f"{written:,}" and numbers["dead"] == "0"
    assert numbers["filtered"] == f"{filtered:,}"
    finished = re.search(r"finished\s+(\d+): done (\d+), dead (\d+), filtered (\d+)", status.output)
    assert finished is not None, status.output
    assert finished.groups() == (str(ITEMS), str(written), "0", str(filtered))
    if result is not None:  # one session: the summary's counts are the run's
        assert (result.items_out, result.items_dead, result.items_filtered) == (
            written,
            0,
            filtered,
        )


def _killed_then_resumed(
    cell: Cell, folder: Path, workspace: Path, postgres_url: str, table: str, sim_url: str
) -> None:
    """The cell run by ``headrace run`` in a subprocess, SIGKILLed once output appears,
    then run again to the end."""
    if cell.pipeline == "graph":
        pipeline = str(workspace / "graph.yaml")
    else:
        pipeline = f"matrix_pipelines:{cell.pipeline}"
    command = [sys.executable, "-m", "headrace", "run", pipeline]
    command += ["--input", str(workspace / "in.jsonl"), "--run-dir", str(_run_dir(folder))]
    command += ["--key", "id"]
    command += [
        "--output",
        _output(cell.sink, folder) if cell.sink != "table" else postgres_url,
    ]
    if cell.sink == "table":
        command += ["--table", table]
    if cell.store == "postgresql":
        command += ["--run-store", postgres_url]
    env = {
        **os.environ,
        "MATRIX_SIM_URL": sim_url,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    first = subprocess.Popen(
        command, env=env, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    while first.poll() is None and not _some_output(cell.sink, folder, postgres_url, table):
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = subprocess.run(
        command, env=env, cwd=workspace, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    rows, _ = _rows(cell.sink, folder, postgres_url, table)
    keys = Counter(str(row.get("id", row.get("key"))) for row in rows)
    assert keys and keys.most_common(1)[0][1] == 1  # each key once


def _some_output(sink: str, folder: Path, postgres_url: str, table: str) -> bool:
    if sink in ("jsonl", "csv"):
        path = folder / f"out.{sink}"
        return path.exists() and path.stat().st_size > 64
    if sink in ("parquet", "batches"):
        directory = folder / ("out.parquet" if sink == "parquet" else "batches")
        return directory.is_dir() and any(directory.glob("[pb]a[rt]*"))
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        if db.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return False
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return bool(count and count[0] > 0)


# -- a new user's path ----------------------------------------------------------------


def test_a_recipe_with_a_transduce_node_on_ray_equals_the_local_run(tmp_path: Path) -> None:
    """From the command line, as a new user would: ``headrace sim``, then the example
    transduction recipe locally and on ``--backend ray --workers 2`` (each with its own
    cache, so neither answers from the other)."""
    example = HERE.parents[1] / "examples" / "transduce"
    for name in ("transduce.yaml", "catalogue.py", "listings.jsonl"):
        (tmp_path / name).write_bytes((example / name).read_bytes())
    sim = subprocess.Popen(
        [sys.executable, "-m", "headrace", "sim", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", sim.stdout.readline())
        assert url is not None
        rows = {}
        for backend in ("local", "ray"):
            flags = ["--backend", backend, "--set", f"models.reader.base_url={url.group(0)}"]
            flags += ["--workers", "2"] if backend == "ray" else []
            flags += ["--output", f"{backend}.jsonl", "--run-dir", f"run-{backend}"]
            done = subprocess.run(
                [sys.executable, "-m", "headrace", "run", "transduce.yaml", *flags],
                cwd=tmp_path,
                env={**os.environ, "HEADRACE_CACHE_DIR": str(tmp_path / f"cache-{backend}")},
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            rows[backend] = sorted((tmp_path / f"{backend}.jsonl").read_text().splitlines())
    finally:
        sim.kill()
        sim.wait()
    assert rows["local"] and rows["ray"] == rows["local"]
