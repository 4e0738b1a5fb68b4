"""The SQL table sink: sessions that open one table at the same moment (a cluster run's
shards) all get it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from services import run_quietly

import headrace as hr
from headrace.io.database import Database, connect, create_table


def _create(
    db: Database, name: str, statement: str, together: threading.Barrier, failures: list[Any]
) -> None:
    together.wait()
    try:
        create_table(db, name, statement)
    except BaseException as exc:
        failures.append(exc)


def test_creators_of_one_postgresql_table_at_the_same_moment_all_succeed(
    postgres_url: str,
) -> None:
    """``CREATE TABLE IF NOT EXISTS`` is not safe against itself in PostgreSQL: eight
    connections released together drew seven ``UniqueViolation``s on ``pg_type`` in each
    of ten trials (measured), which failed a Ray shard of the combination matrix."""
    failures: list[BaseException] = []
    for _ in range(5):
        name = f"race_{uuid.uuid4().hex[:10]}"
        statement = f'CREATE TABLE IF NOT EXISTS "{name}" (id TEXT PRIMARY KEY)'
        connections = [connect(postgres_url) for _ in range(8)]
        together = threading.Barrier(len(connections))
        threads = [
            threading.Thread(target=_create, args=(db, name, statement, together, failures))
            for db in connections
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        connections[0].execute(f'DROP TABLE "{name}"')
        for db in connections:
            db.close()
    assert failures == []


def test_runs_writing_one_new_table_at_once_each_land_their_rows(
    tmp_path: Path, postgres_url: str, table_name: str
) -> None:
    together = threading.Barrier(4)
    failures: list[BaseException] = []

    def one(n: int) -> None:
        rows = [{"id": f"{n}-{i}", "v": i} for i in range(5)]
        together.wait()
        try:
            sink = hr.write_sql(postgres_url, table_name, key="id")
            run_quietly(lambda r: r, rows, key="id", sink=sink, run_dir=tmp_path / f"run{n}",
                   overwrite=True)  # fmt: skip
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    db = connect(postgres_url)
    try:
        assert db.execute(f'SELECT count(*) FROM "{table_name}"').fetchone()[0] == 20
    finally:
        db.close()
