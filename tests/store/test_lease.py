"""One session per run: a live session's lease refuses a second one before it touches
the sink; a dead one's is taken over; a session that lost its lease cannot commit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import LeaseLost, ResumeMismatch, RunBusy
from headrace.store import RunStore, StoreLocation


@hr.step
def double(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "n2": row["n"] * 2}


def source(tmp_path: Path, count: int = 20) -> hr.io.Source:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"k{n}", "n": n}) + "\n" for n in range(count)))
    return hr.read_jsonl(path, key="id")


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    run_dir = tmp_path / request.getfixturevalue("run_name")
    if request.param == "sqlite":
        return StoreLocation(run_dir)
    return StoreLocation(run_dir, request.getfixturevalue("postgres_url"))


def run(where: StoreLocation, tmp_path: Path, **options: Any) -> hr.RunResult:
    return hr.run(
        double,
        source(tmp_path),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=where.run_dir,
        run_store=where.url,
        progress=False,
        **options,
    )


def age_lease(store: RunStore, where: StoreLocation, seconds: float) -> None:
    """Make the stored lease's last heartbeat ``seconds`` old (a holder that died)."""
    if where.url is None:
        import sqlite3

        with sqlite3.connect(where.run_dir / "run.sqlite") as db:
            db.execute("UPDATE lease SET heartbeat = heartbeat - ?", (seconds,))
    else:
        import psycopg

        with psycopg.connect(where.url, autocommit=True) as db:
            db.execute(
                "UPDATE headrace_leases SET heartbeat = heartbeat - %s WHERE run = %s",
                (seconds, where.name),
            )


def test_a_second_session_is_refused_and_leaves_the_sink_alone(
    where: StoreLocation, tmp_path: Path
) -> None:
    run(where, tmp_path)
    written = (tmp_path / "out.jsonl").read_bytes()
    holder = where.open()
    holder.acquire_lease()  # a live session of this run, as another process would hold it
    try:
        with pytest.raises(RunBusy, match=r"is running in another session: session 0 \(pid "):
            run(where, tmp_path, resume=True)
        assert (tmp_path / "out.jsonl").read_bytes() == written
        lease = holder.lease()
        assert lease is not None and lease.alive()
    finally:
        holder.release_lease()
        holder.close()
    assert run(where, tmp_path, resume=True).metrics.items_skipped == 20  # free again


def test_a_dead_sessions_lease_is_taken_over_with_a_warning(
    where: StoreLocation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(where, tmp_path)
    dead = where.open()
    dead.acquire_lease()
    age_lease(dead, where, 60)  # it stopped beating a minute ago (SIGKILL)
    with caplog.at_level(logging.WARNING, logger="headrace.run"):
        result = run(where, tmp_path, resume=True)
    assert result.metrics.items_skipped == 20
    assert any("took over the run" in r.getMessage() for r in caplog.records)
    # the dead session, if it was only frozen, cannot write any more
    with pytest.raises(LeaseLost, match="was taken over by another session"):
        dead.heartbeat()
    with pytest.raises(LeaseLost):
        dead.commit([(99, "k99", "done", None)], [], watermark=0, sink_state={}, session=1)
    dead.close()
    store = where.open()
    assert store.lease() is None  # the resume gave its lease back when it ended
    assert store.status().done == 20
    store.close()


def test_a_refused_open_gives_the_lease_back(where: StoreLocation, tmp_path: Path) -> None:
    run(where, tmp_path)
    with pytest.raises(ResumeMismatch, match="the sink differs"):
        run_quietly(
            double,
            source(tmp_path),
            sink=hr.write_jsonl(tmp_path / "elsewhere.jsonl"),
            run_dir=where.run_dir,
            run_store=where.url,
            resume=True,
        )
    assert run(where, tmp_path, resume=True).metrics.items_skipped == 20


SLOW_JOB = """
import asyncio, os, headrace as hr

@hr.step(concurrency=2)
async def slow(row):
    # past the tenth item, the run waits for the test to let it go (file "release"):
    # however loaded the machine, it is still running when the second session comes
    while int(row["id"][1:]) >= 10 and not os.path.exists("release"):
        await asyncio.sleep(0.02)
    return {"id": row["id"]}

pipeline = slow
"""


@pytest.mark.slow
def test_resume_while_the_run_is_going_is_refused_and_nothing_doubles(tmp_path: Path) -> None:
    (tmp_path / "slow_job.py").write_text(SLOW_JOB)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": "k{n}"}}\n' for n in range(300)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cli = [sys.executable, "-m", "headrace"]
    first = subprocess.Popen(
        [
            *cli,
            "run",
            "slow_job:pipeline",
            *("--input", "in.jsonl", "--key", "id"),
            *("--output", "out.jsonl", "--run-dir", "state"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").stat().st_size:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    status = subprocess.run(
        [*cli, "status", "state"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "running   yes: session 1 (pid " in status.stdout
    second = subprocess.run(
        [*cli, "resume", "state"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert second.returncode == 1
    # the sink's OS lock refuses it first, naming the live holder's pid
    assert f"out.jsonl is being written by another headrace session (pid {first.pid})" in (
        second.stderr
    )
    assert len(second.stderr.strip().splitlines()) == 1  # one line, no traceback
    (tmp_path / "release").touch()
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    keys = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 300
    status = subprocess.run(
        [*cli, "status", "state"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "running   no: no session holds the run" in status.stdout


def test_a_lease_whose_process_is_gone_on_this_machine_is_free_at_once() -> None:
    import socket

    from headrace.store.lease import Lease, machine_id

    here = machine_id()
    assert here  # Linux says its boot id and pid namespace
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = time.time()
    host = socket.gethostname()
    assert not Lease("h", 1, host, gone.pid, now, now, here).alive(now)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert Lease("h", 1, host, running.pid, now, now, here).alive(now)
    finally:
        running.kill()
        running.wait()
    # a session of this very process that ended without giving its lease back is dead
    assert not Lease("ended", 1, host, os.getpid(), now, now, here).alive(now)
    assert not Lease("h", 1, host, gone.pid, now, now - 31, "elsewhere:1").alive(now)


def test_the_same_host_name_in_another_pid_namespace_is_judged_by_its_heartbeat() -> None:
    """A container with this host's name (or another boot of it) whose pid is not one
    this process can see: its pid says nothing; only its heartbeat tells."""
    import socket

    from headrace.store.lease import Lease, machine_id

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = time.time()
    host = socket.gethostname()
    boot, _, namespace = machine_id().partition(":")
    for other in (f"{boot}:{int(namespace) + 1}", f"another-boot:{namespace}", ""):
        assert Lease("h", 1, host, gone.pid, now, now - 1, other).alive(now)
        assert not Lease("h", 1, host, gone.pid, now, now - 31, other).alive(now)


def test_a_live_holder_on_a_host_whose_clock_is_behind_is_not_taken_over(
    postgres_url: str, run_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader whose clock is 60 s ahead of the store's saw a live holder's 1 s old
    heartbeat as 61 s old and took over: the age is judged on the store's clock (a
    shared PostgreSQL store's; a SQLite store is on the reader's own host)."""
    where = StoreLocation(tmp_path / run_name, postgres_url)
    run(where, tmp_path)
    holder = where.open()
    holder.acquire_lease()
    holder.heartbeat()
    try:
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 60)  # this reader runs ahead
        with pytest.raises(RunBusy, match="is running in another session"):
            run(where, tmp_path, resume=True)
        monkeypatch.setattr(time, "time", lambda: real() - 60)  # or behind: a dead one is
        age_lease(holder, where, 40)  # still seen dead
        assert run(where, tmp_path, resume=True).metrics.items_skipped == 20
    finally:
        monkeypatch.undo()
        holder.close()
