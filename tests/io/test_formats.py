"""Sources and sinks of every format: what they read and write, bad input, and resume."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from services import run_quietly

import headrace as hr
from headrace.io.sql import connect
from headrace.store.sqlite import SqliteRunStore

ROWS = [{"id": f"k{i:02d}", "n": i} for i in range(30)]


@hr.step
def square(row: dict[str, Any]) -> dict[str, Any]:
    n = int(row["n"])
    return {"id": row["id"], "square": n * n, "half": n / 2, "even": n % 2 == 0, "tags": [n]}


def run(source: Any, tmp: Path, sink: Any, **options: Any) -> hr.RunResult:
    return hr.run(square, source, sink=sink, run_dir=tmp / "run", progress=False, **options)


def dead(result: hr.RunResult) -> list[tuple[str, str, str]]:
    return [(d.step, d.error_type, d.message) for d in result.dead_letters]


# --- CSV -----------------------------------------------------------------------------------


def write_csv_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_round_trip_with_typed_columns_and_json_cells(tmp_path: Path) -> None:
    source = write_csv_file(
        tmp_path / "in.csv", "id,n\n" + "".join(f"{r['id']},{r['n']}\n" for r in ROWS)
    )
    result = run(hr.read_csv(source, key="id"), tmp_path, hr.write_csv(tmp_path / "out.csv"))
    assert result.items_out == 30
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "square", "half", "even", "tags"]
    assert rows[3] == {"id": "k03", "square": "9", "half": "1.5", "even": "False", "tags": "[3]"}
    assert len(rows) == 30


def test_a_csv_row_with_a_missing_column_is_a_dead_letter_naming_file_and_line(
    tmp_path: Path,
) -> None:
    source = write_csv_file(
        tmp_path / "in.csv", 'id,n\nk1,1\nk2\n"k3\nstill k3",3\nk4,4,extra\nk5,5\n'
    )
    result = run(hr.read_csv(source, key="id"), tmp_path, hr.write_csv(tmp_path / "out.csv"))
    assert result.items_out == 3  # k1, the two-line k3, k5
    assert dead(result) == [
        ("<source>", "BadInput", f"{source}:3: missing column(s) 'n': 1 of 2 fields"),
        ("<source>", "BadInput", f"{source}:6: 3 fields, but the header has 2"),
    ]
    assert result.dead_letters[0].item == "k2"


def test_an_empty_csv_or_a_header_without_the_key_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    empty = write_csv_file(tmp_path / "empty.csv", "")
    with pytest.raises(hr.SourceError, match="empty file; a CSV source needs a header row"):
        run(hr.read_csv(empty, key="id"), tmp_path, hr.write_csv(tmp_path / "out.csv"))
    keyless = write_csv_file(tmp_path / "keyless.csv", "name,n\na,1\n")
    with pytest.raises(hr.SourceError, match=r"keyless.csv:1: the header has no key column 'id'"):
        run(hr.read_csv(keyless, key="id"), tmp_path, hr.write_csv(tmp_path / "out.csv"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.csv").exists()


def test_an_output_field_that_is_not_a_csv_column_is_a_dead_letter_of_the_sink(
    tmp_path: Path,
) -> None:
    @hr.step
    def shape(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "extra": 1} if row["n"] == 5 else {"id": row["id"]}

    sink = hr.write_csv(tmp_path / "out.csv", columns={"id": "string"})
    result = run_quietly(shape, ROWS[:8], sink=sink, run_dir=tmp_path / "run")
    assert dead(result) == [("<sink>", "ValueError", "field 'extra' is not a column (columns: id)")]
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "id"
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 8  # header + 7


def test_csv_sink_cuts_uncommitted_rows_and_keeps_its_columns_on_open(tmp_path: Path) -> None:
    sink = hr.write_csv(tmp_path / "out.csv")
    sink.open({})
    state = sink.write([sink.encode("a", {"x": 1, "y": "one"})])
    sink.write([sink.encode("b", {"x": 2, "y": "two"})])  # never committed
    sink.close()
    again = hr.write_csv(tmp_path / "out.csv")
    again.open(state)
    with pytest.raises(ValueError, match="field 'x': expected int64, got str"):
        again.encode("c", {"x": "three"})
    again.write([again.encode("c", {"x": 3, "y": None})])
    again.close()
    assert (tmp_path / "out.csv").read_text() == "x,y\n1,one\n3,\n"


# --- Parquet -------------------------------------------------------------------------------


def write_parquet_file(path: Path, rows: list[dict[str, Any]], row_group_size: int) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def test_parquet_is_read_by_row_group_and_written_as_parts(tmp_path: Path) -> None:
    source = write_parquet_file(tmp_path / "in.parquet", ROWS, row_group_size=7)
    assert pq.ParquetFile(source).num_row_groups == 5
    sink = hr.write_parquet(tmp_path / "out", items_per_file=8)
    result = run(hr.read_parquet(source, key="id"), tmp_path, sink)
    assert result.items_out == 30
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("square").type == pa.int64()
    assert table.schema.field("half").type == pa.float64()
    assert table.schema.field("even").type == pa.bool_()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert rows[4] == {"id": "k04", "square": 16, "half": 2.0, "even": True, "tags": "[4]"}
    assert len(rows) == 30


def test_a_file_that_is_not_parquet_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text('{"id": 1}\n')
    with pytest.raises(hr.SourceError, match=r"fake.parquet: not a Parquet file"):
        run(hr.read_parquet(fake, key="id"), tmp_path, hr.write_parquet(tmp_path / "out"))
    with pytest.raises(hr.SourceError, match=r"cannot read .*missing.parquet"):
        run(hr.read_parquet(tmp_path / "missing.parquet"), tmp_path, hr.write_jsonl(fake))
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_a_parquet_row_without_its_key_names_row_group_and_row(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"id": f"k{i}", "n": i} for i in range(6)]
    rows[4]["id"] = None
    source = write_parquet_file(tmp_path / "in.parquet", rows, row_group_size=3)
    result = run(hr.read_parquet(source, key="id"), tmp_path, hr.write_parquet(tmp_path / "o"))
    assert dead(result) == [
        ("<source>", "BadInput", f"{source} row group 1 row 1: the key column 'id' is empty")
    ]


def test_a_value_of_the_wrong_type_is_a_dead_letter_of_the_parquet_sink(tmp_path: Path) -> None:
    @hr.step
    def shape(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "score": "high" if row["n"] == 2 else row["n"] * 1.5}

    sink = hr.write_parquet(tmp_path / "out")
    result = run_quietly(shape, ROWS[:5], sink=sink, run_dir=tmp_path / "run", ordered=True)
    assert dead(result) == [
        ("<sink>", "ValueError", "field 'score': expected float64, got str 'high'")
    ]
    assert pq.read_table(tmp_path / "out").num_rows == 4


def test_parquet_sink_removes_uncommitted_parts_on_open(tmp_path: Path) -> None:
    sink = hr.write_parquet(tmp_path / "out")
    sink.open({})
    state = sink.write([sink.encode("a", {"x": 1})])
    sink.write([sink.encode("b", {"x": 2})])  # renamed into place, never committed
    hr.write_parquet(tmp_path / "out").open(state)
    assert pq.read_table(tmp_path / "out").to_pylist() == [{"x": 1}]


# --- a directory of files ------------------------------------------------------------------


def test_a_directory_source_gives_one_item_per_file_keyed_by_path(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "b.txt").write_text("bee")
    (docs / "a.txt").write_text("ay")
    (docs / "sub" / "c.txt").write_text("sea")
    (docs / "skip.md").write_text("not matched")
    (docs / "bad.txt").write_bytes(b"\xff\xfe not utf-8")

    @hr.step
    def length(doc: dict[str, str]) -> dict[str, Any]:
        return {"path": doc["path"], "chars": len(doc["text"])}

    result = run_quietly(
        length,
        hr.read_dir(docs, pattern="*.txt"),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=tmp_path / "run",
        ordered=True,
    )
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [
        {"path": "a.txt", "chars": 2},
        {"path": "b.txt", "chars": 3},
        {"path": "sub/c.txt", "chars": 3},
    ]
    assert dead(result) == [
        (
            "<source>",
            "BadInput",
            f"{docs / 'bad.txt'}: not UTF-8 text (byte 0); read it with binary=True",
        )
    ]
    store = SqliteRunStore.in_dir(tmp_path / "run")
    assert set(store.finished_sessions()) == {"a.txt", "b.txt", "sub/c.txt", "bad:2"}


# --- SQL tables ----------------------------------------------------------------------------


def table_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    db = connect(url)
    try:
        return [tuple(r) for r in db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()]
    finally:
        db.close()


def test_sql_sink_upserts_every_output_once(
    database_url: str, table_name: str, tmp_path: Path
) -> None:
    sink = hr.write_sql(database_url, table_name, key="id", batch_size=7)
    result = run(ROWS, tmp_path, sink, key="id")
    assert result.items_out == 30
    rows = table_rows(database_url, table_name)
    assert len(rows) == 30
    assert rows[3][:4] == ("k03", 9, 1.5, False)  # SQLite gives 0 for False: equal
    tags = rows[3][4]  # JSON text in SQLite, decoded jsonb in PostgreSQL
    assert (json.loads(tags) if isinstance(tags, str) else tags) == [3]


def test_sql_sink_writes_into_an_existing_table_and_refuses_one_without_a_unique_key(
    database_url: str, table_name: str, tmp_path: Path
) -> None:
    db = connect(database_url)
    db.execute(f'CREATE TABLE "{table_name}" (id TEXT, square BIGINT)')
    db.close()

    @hr.step
    def only_square(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "square": row["n"] ** 2}

    sink = hr.write_sql(database_url, table_name, key="id")
    with pytest.raises(hr.HeadraceError, match="neither the primary key nor uniquely indexed"):
        run_quietly(only_square, ROWS, sink=sink, key="id", run_dir=tmp_path / "r1")
    db = connect(database_url)
    db.execute(f'CREATE UNIQUE INDEX "{table_name}_id" ON "{table_name}" (id)')
    db.close()
    sink = hr.write_sql(database_url, table_name, key="id")
    result = run_quietly(only_square, ROWS, sink=sink, key="id", run_dir=tmp_path / "r2")
    assert result.items_out == 30
    assert table_rows(database_url, table_name)[5] == ("k05", 25)


def test_a_commit_that_reached_the_table_but_not_the_store_is_rolled_forward(
    database_url: str, table_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    @hr.step
    async def counted(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["id"])
        await asyncio.sleep(0.002)  # slow enough that the first commit comes mid-run
        return {"id": row["id"], "n": row["n"]}

    class Killed(BaseException):
        """Stands in for SIGKILL between the sink's transaction and the store's."""

    real_commit = SqliteRunStore.commit

    def die_after_the_sink(self: SqliteRunStore, *args: Any, **kwargs: Any) -> None:
        raise Killed

    options: dict[str, Any] = {"key": "id", "run_dir": tmp_path / "run", "progress": False}
    monkeypatch.setattr(SqliteRunStore, "commit", die_after_the_sink)
    sink = hr.write_sql(database_url, table_name, key="id", batch_size=10)
    with pytest.raises(Killed):
        hr.run(counted, ROWS, sink=sink, window=1, **options)
    monkeypatch.setattr(SqliteRunStore, "commit", real_commit)
    in_table = {row[0] for row in table_rows(database_url, table_name)}
    assert 10 <= len(in_table) < 30  # the first batch is in the table, not in the store
    first_calls = list(calls)
    calls.clear()
    sink = hr.write_sql(database_url, table_name, key="id", batch_size=10)
    result = hr.run(counted, ROWS, sink=sink, resume=True, **options)
    assert result.metrics.items_skipped == len(in_table)
    assert not in_table & set(calls), "an item committed in the table was computed again"
    assert sorted(set(first_calls) | set(calls)) == sorted(r["id"] for r in ROWS)
    assert len(table_rows(database_url, table_name)) == 30
    status = SqliteRunStore.in_dir(tmp_path / "run").status()
    assert status.done == 30


def test_sql_source_streams_a_query_with_its_key(
    database_url: str, table_name: str, tmp_path: Path
) -> None:
    db = connect(database_url)
    db.execute(f'CREATE TABLE "{table_name}" (id TEXT PRIMARY KEY, n BIGINT)')
    db.begin()
    for row in ROWS:
        db.execute(f'INSERT INTO "{table_name}" VALUES (?, ?)', (row["id"], row["n"]))
    if "sqlite" in database_url:  # SQLite lets a primary key be NULL
        db.execute(f'INSERT INTO "{table_name}" VALUES (NULL, 99)')
    db.commit()
    db.close()
    source = hr.read_sql(database_url, f'SELECT id, n FROM "{table_name}" ORDER BY n', key="id")
    result = run(source, tmp_path, hr.write_jsonl(tmp_path / "out.jsonl"))
    assert result.items_out == 30
    out = {json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    assert out == {r["id"] for r in ROWS}
    if "sqlite" in database_url:
        assert dead(result) == [
            ("<source>", "BadInput", "query row 30: the key column 'id' is empty")
        ]
    with pytest.raises(hr.SourceError, match="the query has no key column 'nope'"):
        run_quietly(
            square,
            hr.read_sql(database_url, f'SELECT * FROM "{table_name}"', key="nope"),
            run_dir=tmp_path / "other",
        )
