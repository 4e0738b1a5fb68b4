"""Native list and struct columns in Parquet, from declared annotations."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.io import column_types


class Author(BaseModel):
    name: str
    email: str | None = None


class Info(BaseModel):
    kind: Literal["library", "tool"]
    keywords: list[str]
    scores: list[float]
    author: Author
    stars: int | None


@hr.step
def describe(record: dict[str, Any]) -> Info:
    n = record["id"]
    return Info(
        kind="tool" if n % 2 else "library",
        keywords=[f"k{n}", "x"] if n else [],
        scores=[0.5] * n,
        author=Author(name=f"a{n}"),
        stars=None if n == 0 else n,
    )


RECORDS = [{"id": n, "name": f"pkg{n}"} for n in range(5)]


def table(directory: Path) -> pa.Table:
    return pq.read_table(sorted(directory.glob("part-*.parquet")))


def test_a_models_lists_and_structs_are_native_parquet_columns(tmp_path: Path) -> None:
    run_quietly(describe, RECORDS, key="id", sink=hr.write_parquet(tmp_path / "out"))
    written = table(tmp_path / "out")
    schema = {field.name: field.type for field in written.schema}
    assert schema["keywords"] == pa.list_(pa.string())
    assert schema["scores"] == pa.list_(pa.float64())
    assert schema["author"] == pa.struct([("name", pa.string()), ("email", pa.string())])
    assert schema["stars"] == pa.int64()  # declared: the first value was None
    assert schema["kind"] == pa.string()
    rows = sorted(written.to_pylist(), key=lambda r: r["author"]["name"])
    assert rows[0]["keywords"] == [] and rows[1]["keywords"] == ["k1", "x"]
    assert rows[3]["author"] == {"name": "a3", "email": None}


def test_with_input_keeps_the_declared_types_of_what_it_added(tmp_path: Path) -> None:
    run_quietly(
        hr.with_input(describe),
        RECORDS,
        key="id",
        sink=hr.write_parquet(tmp_path / "out"),
    )
    schema = {field.name: field.type for field in table(tmp_path / "out").schema}
    assert schema["keywords"] == pa.list_(pa.string())
    assert schema["id"] == pa.int64() and schema["name"] == pa.string()


def test_csv_keeps_nested_values_as_json_text(tmp_path: Path) -> None:
    run_quietly(describe, RECORDS[:2], key="id", sink=hr.write_csv(tmp_path / "o.csv"))
    rows = {row["keywords"] for row in csv.DictReader((tmp_path / "o.csv").open())}
    assert rows == {"[]", '["k1","x"]'}


def test_given_nested_columns_are_checked_and_named(tmp_path: Path) -> None:
    sink = hr.write_parquet(tmp_path / "out", columns={"id": "int64", "tags": "list< string >"})
    result = run_quietly(
        lambda r: {"id": r["id"], "tags": ["a", r["id"]]},
        RECORDS[:2],
        key="id",
        sink=sink,
        run_dir=tmp_path / "run",
    )
    assert result.items_dead == 2
    assert "field 'tags[1]': expected string, got int" in result.dead_letters[0].message
    with pytest.raises(ValueError, match="list<string> columns are for Parquet"):
        hr.write_csv(tmp_path / "x.csv", columns={"tags": "list<string>"})
    with pytest.raises(ValueError, match="unknown column type 'list<strin>'"):
        hr.write_parquet(tmp_path / "y", columns={"tags": "list<strin>"})


@dataclasses.dataclass
class Point:
    x: float
    label: str


def test_annotations_map_to_column_types() -> None:
    assert column_types.type_of_annotation(list[str]) == "list<string>"
    assert column_types.type_of_annotation(tuple[int, ...]) == "list<int64>"
    assert column_types.type_of_annotation(tuple[int, str]) == "json"
    assert column_types.type_of_annotation(list[dict[str, int]]) == "json"
    assert column_types.type_of_annotation(Point) == "struct<x: float64, label: string>"
    assert column_types.type_of_annotation(list[Point]) == "list<struct<x: float64, label: string>>"
    assert column_types.type_of_annotation(int | str) == "json"
    assert column_types.check_type("struct<a: list<int64>, b: bool>") == (
        "struct<a: list<int64>, b: bool>"
    )
    for bad in ("list<", "struct<a int64>", "struct<a: int64, a: bool>", "lists<string>"):
        with pytest.raises(ValueError):
            column_types.check_type(bad)


@hr.step(batch=hr.Batch(max_size=4, max_wait=0.01))
def vectors(texts: list[dict[str, Any]]) -> list[list[float]]:
    """What an embedding step returns: one list of floats per item."""
    return [[float(len(t["name"])), 0.5] for t in texts]


@hr.step
def scored(record: dict[str, Any]) -> Info:
    return describe.fn(record)


def test_with_input_under_a_field_keeps_the_step_s_declared_type(tmp_path: Path) -> None:
    run_quietly(
        hr.with_input(vectors, field="embedding") >> hr.with_input(scored, field="info"),
        RECORDS,
        key="id",
        sink=hr.write_parquet(tmp_path / "out"),
        run_dir=tmp_path / "run",
    )
    schema = table(tmp_path / "out").schema
    assert schema.field("embedding").type == pa.list_(pa.float64())
    assert pa.types.is_struct(schema.field("info").type)


def test_the_cli_takes_columns_for_its_output(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from headrace.cli import app

    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": {n}, "v": [{n}, 1.5]}}\n' for n in range(4)))
    runner = CliRunner()

    def run(output: str, run_dir: str, *columns: str) -> Any:
        given = [part for column in columns for part in ("--columns", column)]
        paths = ["--output", str(tmp_path / output), "--run-dir", str(tmp_path / run_dir)]
        return runner.invoke(
            app, ["run", "first_jobs:passes", "--input", str(source), "--key", "id", *given, *paths]
        )

    ran = run("out.parquet", "run", "id=int64", "v=list<float64>")
    assert ran.exit_code == 0, ran.output
    assert table(tmp_path / "out.parquet").schema.field("v").type == pa.list_(pa.float64())
    wrong = run("o.jsonl", "run2", "v=list<float64>")
    assert wrong.exit_code == 2 and "columns are for .csv, .parquet" in wrong.output
    assert not (tmp_path / "run2").exists()
    bad = run("o.csv", "run3", "v=lits<int64>")
    assert bad.exit_code == 2 and "--columns" in bad.output
