"""SQL sinks: the bulk path vs. one insert per row, into SQLite and PostgreSQL.

100k rows of five columns, upserted on the key. Bulk: ``hr.write_sql``'s own
write path (batches of 1000 in one transaction each, with the run's journal;
``executemany`` on SQLite, ``COPY`` + ``INSERT ... SELECT ... ON CONFLICT`` on
PostgreSQL). Reference: what a per-item callback does, one ``INSERT ... ON
CONFLICT`` and one commit per row. Same process run. Prints one JSON line.

    python bench/sinks.py [--rows 100000] [--postgres postgresql://postgres@127.0.0.1/test]

PostgreSQL is skipped (``null`` in the output) when it does not answer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import headrace as hr
from headrace.io.sql import Database, connect, quote


def rows(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"item-{i:07d}",
            {"score": i * 0.5, "label": f"label {i % 97}", "count": i, "ok": i % 3 == 0},
        )
        for i in range(n)
    ]


def bulk(url: str, table: str, data: list[tuple[str, dict[str, Any]]]) -> float:
    sink = hr.write_sql(url, table, key="id", batch_size=1000)
    sink.open({"token": uuid.uuid4().hex})
    encoded = [sink.encode(key, value) for key, value in data]
    journal = b'{"rows": [], "dead": [], "watermark": 0, "session": 1, "replace": false}'
    started = time.perf_counter()
    for start in range(0, len(encoded), 1000):
        sink.write(encoded[start : start + 1000], journal)
    elapsed = time.perf_counter() - started
    sink.close()
    return elapsed


def per_row(url: str, table: str, data: list[tuple[str, dict[str, Any]]]) -> float:
    db: Database = connect(url)
    names = ["id", "score", "label", "count", "ok"]
    columns = ", ".join(quote(n) for n in names)
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names[1:])
    statement = (
        f"INSERT INTO {quote(table)} ({columns}) VALUES (?, ?, ?, ?, ?) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )
    started = time.perf_counter()
    for key, value in data:
        db.begin()
        db.execute(statement, (key, value["score"], value["label"], value["count"], value["ok"]))
        db.commit()
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def compare(url: str, data: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    bulk_table, row_table = (
        f"bench_bulk_{uuid.uuid4().hex[:8]}",
        f"bench_row_{uuid.uuid4().hex[:8]}",
    )
    try:
        bulk_s = bulk(url, bulk_table, data)
        db = connect(url)
        kinds = "id TEXT PRIMARY KEY, score DOUBLE PRECISION, label TEXT, count BIGINT, ok BOOLEAN"
        db.execute(f"CREATE TABLE {quote(row_table)} ({kinds})")
        db.close()
        row_s = per_row(url, row_table, data)
        db = connect(url)
        counted = [
            db.execute(f"SELECT count(*) FROM {quote(t)}").fetchone()[0]
            for t in (bulk_table, row_table)
        ]
        assert counted == [len(data)] * 2, counted
    finally:
        db = connect(url)
        for t in (bulk_table, row_table):
            db.execute(f"DROP TABLE IF EXISTS {quote(t)}")
        db.close()
    return {
        "bulk_rows_per_s": round(len(data) / bulk_s),
        "per_row_rows_per_s": round(len(data) / row_s),
        "ratio": round(row_s / bulk_s, 1),
    }


def main(n_rows: int, postgres: str) -> dict[str, Any]:
    data = rows(n_rows)
    with tempfile.TemporaryDirectory() as where:
        sqlite = compare(f"sqlite:///{Path(where) / 'bench.db'}", data)
    try:
        connect(postgres).close()
    except ConnectionError:
        postgresql = None
    else:
        postgresql = compare(postgres, data)
    return {"bench": "sinks", "rows": n_rows, "sqlite": sqlite, "postgresql": postgresql}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(json.dumps(main(args.rows, args.postgres)))
