"""A PostgreSQL run store that restarts mid-run: the run waits for it and goes on;
one that stays away longer than the bound stops the run with one line, resumable.
Each test starts a PostgreSQL server of its own (never the shared one)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import PrivatePostgres, run_quietly

import headrace as hr
from headrace.errors import StoreUnavailable
from headrace.store import StoreLocation

ITEMS = 300


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


def source(tmp_path: Path) -> hr.io.Source:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"k{n:03d}"}) + "\n" for n in range(ITEMS)))
    return hr.read_jsonl(path, key="id")


def keys(tmp_path: Path) -> list[str]:
    return [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_store_restart_mid_run_is_waited_out(
    tmp_path: Path, private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @hr.step(concurrency=4)
    async def work(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["id"])
        if len(calls) == 60:
            private_postgres.stop()  # the database goes away mid-run ...
        if len(calls) == 120:
            await asyncio.sleep(1.0)  # (commits keep failing meanwhile)
            private_postgres.start()  # ... and comes back
        await asyncio.sleep(0.01)
        return {"id": row["id"]}

    caplog.set_level(logging.WARNING, logger="headrace.run")
    result = run_quietly(
        work,
        source(tmp_path),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=tmp_path / "run",
        run_store=private_postgres.url,
    )
    assert result.items_out == ITEMS and result.items_dead == 0
    assert sorted(keys(tmp_path)) == sorted(set(keys(tmp_path))) and len(keys(tmp_path)) == ITEMS
    assert "is not answering" in caplog.text and "answers again" in caplog.text
    store = StoreLocation(tmp_path / "run", private_postgres.url).open()
    assert store.status().done == ITEMS
    store.close()


@pytest.mark.slow
def test_a_long_store_outage_stops_the_run_in_one_line_and_it_resumes(
    tmp_path: Path, private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_STORE_OUTAGE_S", "1")
    calls: list[str] = []

    @hr.step(concurrency=4)
    async def work(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["id"])
        if len(calls) == 60:
            private_postgres.stop()
        await asyncio.sleep(0.01)
        return {"id": row["id"]}

    def go(**options: Any) -> hr.RunResult:
        return hr.run(
            work,
            source(tmp_path),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            run_store=private_postgres.url,
            progress=False,
            **options,
        )

    with pytest.raises(StoreUnavailable) as stopped:
        go()
    message = str(stopped.value)
    assert message.startswith("the run store at postgresql://postgres@127.0.0.1:")
    assert "did not answer for 1 s" in message and "headrace resume" in message
    assert len(message.splitlines()) == 1
    private_postgres.start()
    resumed = go(resume=True)
    assert resumed.items_dead == 0
    assert sorted(keys(tmp_path)) == sorted(set(keys(tmp_path))) and len(keys(tmp_path)) == ITEMS


@pytest.mark.slow
def test_a_sink_table_restart_mid_run_is_waited_out(
    tmp_path: Path, private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The PostgreSQL server holding the sink's table restarts (the run store is SQLite):
    it used to end the run with a ~200-line traceback; now it is waited out."""
    from headrace.io.sql import connect

    calls: list[str] = []

    @hr.step(concurrency=4)
    async def work(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["id"])
        if len(calls) == 60:
            private_postgres.stop()
        if len(calls) == 120:
            await asyncio.sleep(1.0)
            private_postgres.start()
        await asyncio.sleep(0.01)
        return {"id": row["id"], "n": len(row["id"])}

    caplog.set_level(logging.WARNING, logger="headrace.run")
    result = run_quietly(
        work,
        source(tmp_path),
        sink=hr.write_sql(private_postgres.url, "results", key="id", batch_size=20),
        run_dir=tmp_path / "run",
    )
    assert result.items_out == ITEMS and result.items_dead == 0
    assert "the sink's database (table results) at" in caplog.text
    assert "answers again" in caplog.text
    db = connect(private_postgres.url)
    try:
        rows = db.execute('SELECT id FROM "results"').fetchall()
    finally:
        db.close()
    assert sorted(r[0] for r in rows) == sorted(f"k{n:03d}" for n in range(ITEMS))
