"""Parquet's decimal128, timestamp (with and without a zone, in ns) and binary columns go
through a pipeline into every sink: natively into Parquet and SQL tables, and as text
in one documented way into JSON and CSV (a decimal's digits, ISO 8601, base64). They
used to make every row a dead letter at the sink, even Parquet to Parquet."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from services import run_quietly

import headrace as hr
from headrace.io.sql import connect

ROWS = 12
COLUMNS = {  # as a user (or a recipe's columns:) gives them
    "id": "string",
    "price": "decimal128(10, 2)",
    "seen": "timestamp[ns]",
    "at": "timestamp[us, tz=UTC]",
    "blob": "binary",
}
UTC = dt.UTC


def _source(tmp_path: Path) -> Path:
    table = pa.table(
        {
            "id": pa.array([f"k{n}" for n in range(ROWS)]),
            "price": pa.array(
                [Decimal(f"{n}.{n % 10}5") for n in range(ROWS)], pa.decimal128(10, 2)
            ),
            "seen": pa.array(
                [1_600_000_000_000_000_000 + n * 1_000_000_001 for n in range(ROWS)],
                pa.timestamp("ns"),
            ),
            "at": pa.array(
                [dt.datetime(2024, 1, 1, n, tzinfo=UTC) for n in range(ROWS)],
                pa.timestamp("us", tz="UTC"),
            ),
            "blob": pa.array([bytes([n, 0, 255]) for n in range(ROWS)], pa.binary()),
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    return path


@hr.step
def identity(row: dict[str, Any]) -> dict[str, Any]:
    return row


def _run(tmp_path: Path, sink: Any, name: str) -> hr.RunResult:
    return run_quietly(
        identity,
        hr.read_parquet(_source(tmp_path), key="id"),
        sink=sink,
        run_dir=tmp_path / f"run-{name}",
    )


def test_parquet_to_parquet_keeps_the_arrow_types(tmp_path: Path) -> None:
    result = _run(tmp_path, hr.write_parquet(tmp_path / "out"), "parquet")
    assert result.items_dead == 0 and result.items_out == ROWS
    source = pq.read_table(tmp_path / "in.parquet")
    out = pq.read_table(tmp_path / "out").sort_by("id")
    for name in ("price", "seen", "at", "blob"):
        assert out.schema.field(name).type == source.schema.field(name).type, name
    assert out.select(["price", "seen", "at", "blob"]).equals(
        source.sort_by("id").select(["price", "seen", "at", "blob"])
    )


def test_json_and_csv_write_them_as_text_one_way(tmp_path: Path) -> None:
    assert _run(tmp_path, hr.write_jsonl(tmp_path / "o.jsonl"), "jsonl").items_dead == 0
    assert _run(tmp_path, hr.write_csv(tmp_path / "o.csv"), "csv").items_dead == 0
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    with open(tmp_path / "o.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for record in (*lines, *rows):
        n = int(record["id"][1:])
        assert Decimal(record["price"]) == Decimal(f"{n}.{n % 10}5")
        assert record["at"] == dt.datetime(2024, 1, 1, n, tzinfo=UTC).isoformat()
        seen = pd.Timestamp(record["seen"])  # ISO 8601, to the nanosecond
        assert seen.value == 1_600_000_000_000_000_000 + n * 1_000_000_001
        assert base64.b64decode(record["blob"]) == bytes([n, 0, 255])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sql_tables_take_them(
    tmp_path: Path, database: str, postgres_url: str, table_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}" if database == "sqlite" else postgres_url
    result = _run(tmp_path, hr.write_sql(url, table_name, key="id"), database)
    assert result.items_dead == 0 and result.items_out == ROWS
    db = connect(url)
    try:
        rows = db.execute(f'SELECT id, price, at, blob FROM "{table_name}"').fetchall()
    finally:
        db.close()
    for key, price, at, blob in rows:
        n = int(key[1:])
        assert Decimal(str(price)) == Decimal(f"{n}.{n % 10}5")
        when = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)
        assert when == dt.datetime(2024, 1, 1, n, tzinfo=UTC)
        assert bytes(blob) == bytes([n, 0, 255])
    again = _run(tmp_path, hr.write_sql(url, table_name, key="id"), database)  # resumes
    assert again.metrics.items_skipped == ROWS


def test_a_decimal_that_does_not_fit_its_column_is_that_items_dead_letter(tmp_path: Path) -> None:
    @hr.step
    def bigger(row: dict[str, Any]) -> dict[str, Any]:
        grown = row["price"] * 10**9 if row["id"] == "k3" else row["price"]
        return {**row, "price": grown}

    result = run_quietly(
        bigger,
        hr.read_parquet(_source(tmp_path), key="id"),
        sink=hr.write_parquet(tmp_path / "out", columns=COLUMNS),
        run_dir=tmp_path / "run",
    )
    (dead,) = result.dead_letters
    assert dead.step == "<sink>" and "does not fit in decimal128(10, 2)" in dead.message
    assert result.items_out == ROWS - 1
