"""The cluster tests' input files and run names (the local Ray is in the top conftest)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def write_items(path: Path, count: int) -> Path:
    """A JSON Lines file of ``count`` items ``{"id": "item-00007", "n": 7}``."""
    with path.open("w") as handle:
        for n in range(count):
            handle.write(json.dumps({"id": f"item-{n:05d}", "n": n}) + "\n")
    return path


def jsonl_ids(path: Path) -> list[str]:
    """The ``id`` of every line of a JSON Lines file, in file order."""
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line]


@pytest.fixture
def shard_runs(run_name: str, postgres_url: str) -> Iterator[str]:
    """A fresh run name whose shards' runs (``<name>.00003``) are deleted from the test
    PostgreSQL afterwards, as ``run_name`` deletes the run's own rows."""
    yield run_name
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for table in (
            "headrace_runs",
            "headrace_items",
            "headrace_dead",
            "headrace_sessions",
            "headrace_leases",
        ):
            if connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                connection.execute(f"DELETE FROM {table} WHERE run LIKE %s", (f"{run_name}.%",))
