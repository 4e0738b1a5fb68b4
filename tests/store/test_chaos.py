"""Kill a durable run with SIGKILL at random moments; resume until done; nothing lost or doubled.

12 kills per sink kind by default (CI's); HEADRACE_CHAOS_KILLS=200 for a longer run.
The seed is printed; HEADRACE_CHAOS_SEED=<n> replays one.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from services import JOBS

from headrace.io.sql import connect
from headrace.store import StoreLocation

JOB = JOBS / "chaos_job.py"
KILLS = int(os.environ.get("HEADRACE_CHAOS_KILLS", "12"))
ITEMS = max(5000, KILLS * 250)  # enough work that every kill lands mid-run


def _write_input(path: Path) -> None:
    with path.open("w") as handle:
        for n in range(ITEMS):
            handle.write(json.dumps({"id": f"item-{n:05d}", "n": n}) + "\n")


def _launch(
    run_dir: Path, source: Path, kind: str, output: str, calls: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(JOBS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(JOB), str(run_dir), str(source), kind, output, str(calls)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


SINKS = ["jsonl", "batches", "csv", "parquet", "sqlite", "postgresql"]


def _output(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the job writes: a path, or for SQL sinks ``<url> <table>``."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'out.db'} results"
    if kind == "postgresql":
        return f"{request.getfixturevalue('postgres_url')} {request.getfixturevalue('table_name')}"
    return str(tmp_path / {"jsonl": "out.jsonl", "csv": "out.csv"}.get(kind, "out"))


def table_rows(output: str, columns: tuple[str, ...]) -> list[dict[str, object]]:
    """The ``columns`` of every row of a SQL sink's table (``output``: ``<url> <table>``)."""
    url, table = output.split(" ")
    db = connect(url)
    try:
        rows = db.execute(f'SELECT {", ".join(columns)} FROM "{table}"').fetchall()
    finally:
        db.close()
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _outputs(kind: str, output: str) -> list[dict[str, object]]:
    """Every row the sink holds, as ``{"id": ..., "square": ...}``."""
    if kind in ("sqlite", "postgresql"):
        return table_rows(output, ("id", "square"))
    if kind == "parquet":
        parts = sorted(Path(output).glob("*.parquet"))
        orders = {tuple(pq.read_schema(part).names) for part in parts}
        assert orders == {("square", "id", "n")}, f"parts' column orders differ: {orders}"
        return [_checked(r) for r in pq.read_table(output).to_pylist()]
    if kind == "csv":
        with open(output, newline="") as handle:
            assert handle.readline() == "square,id,n\n"
            handle.seek(0)
            return [_checked(r) for r in csv.DictReader(handle)]
    path = Path(output)
    files = [path] if kind == "jsonl" else sorted(path.glob("batch_*.jsonl"))
    rows = []
    for file in files:
        rows.extend(json.loads(line) for line in file.read_text().splitlines() if line)
    return rows


def sessions_calling(calls: Path) -> dict[str, set[int]]:
    """Key -> the sessions whose step was called with it, from a job's calls log
    ("session <pid> <n>" lines, then "<pid> <key>" for each call)."""
    session_of: dict[str, int] = {}
    called_in: dict[str, set[int]] = defaultdict(set)
    for line in calls.read_text().splitlines():
        parts = line.split()
        if parts[0] == "session":
            session_of[parts[1]] = int(parts[2])
        else:
            called_in[parts[1]].add(session_of[parts[0]])
    return called_in


def _checked(row: dict[str, object]) -> dict[str, object]:
    """A tabular row whose fields sit under their own columns (not swapped)."""
    n = int(row["n"])  # type: ignore[call-overload]
    assert row["id"] == f"item-{n:05d}" and int(row["square"]) == n * n, row  # type: ignore[call-overload]
    return {"id": row["id"], "square": n * n}


def _expected() -> tuple[dict[str, int], set[str], set[str]]:
    outputs, dead, filtered = {}, set(), set()
    for n in range(ITEMS):
        key = f"item-{n:05d}"
        if n % 97 == 13:
            dead.add(key)
        elif (n * n) % 5 == 1:
            filtered.add(key)
        else:
            outputs[key] = n * n
    return outputs, dead, filtered


@pytest.mark.slow
@pytest.mark.parametrize("kind", SINKS)
def test_sigkill_at_random_moments_then_resume_is_exactly_once(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    kills_wanted = KILLS
    seed = int(os.environ.get("HEADRACE_CHAOS_SEED", str(random.SystemRandom().randrange(10**9))))
    print(f"chaos seed {seed} ({kind}, {kills_wanted} kills)")
    rng = random.Random(seed)
    run_dir = tmp_path / request.getfixturevalue("run_name")  # unique in a shared run store
    source, calls = tmp_path / "in.jsonl", tmp_path / "calls.log"
    output = _output(kind, tmp_path, request)
    _write_input(source)

    kills = 0
    finished = False
    for _ in range(kills_wanted + 50):
        job = _launch(run_dir, source, kind, output, calls)
        if kills < kills_wanted:
            try:
                job.wait(timeout=rng.uniform(0.25, 0.7))
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait()
                kills += 1
                continue
        else:
            job.wait(timeout=120)
        stderr = job.stderr.read().decode() if job.stderr else ""  # type: ignore[union-attr]
        assert job.returncode == 0, f"seed {seed}: job failed\n{stderr}"
        if kills >= kills_wanted:
            finished = True
            break
    assert finished and kills == kills_wanted, f"seed {seed}: the run ended before enough kills"

    # each key at the sink exactly once, with the clean run's output
    expected_out, expected_dead, expected_filtered = _expected()
    rows = _outputs(kind, output)
    keys = [str(row["id"]) for row in rows]
    assert len(keys) == len(set(keys)), f"seed {seed}: a key was written twice"
    assert {str(r["id"]): r["square"] for r in rows} == expected_out, f"seed {seed}"

    run_store = output.split(" ")[0] if kind == "postgresql" else None
    store = StoreLocation(run_dir, run_store).open()
    status = store.status()
    assert (status.done, status.dead, status.filtered) == (
        len(expected_out),
        len(expected_dead),
        len(expected_filtered),
    )
    assert {d.key for d in store.dead_letters()} == expected_dead
    committed_in = store.finished_sessions()
    store.close()

    # no finished item's step ran again in a later session
    called_in = sessions_calling(calls)
    recomputed = {
        key: sorted(sessions)
        for key, sessions in called_in.items()
        if max(sessions) > committed_in[key]
    }
    assert recomputed == {}, f"seed {seed}: finished items were computed again: {recomputed}"
    assert set(called_in) == set(committed_in)


def _wait_for_a_call(jobs: list[subprocess.Popen[bytes]], calls: Path, mark: int) -> None:
    """Wait until the calls log gains a step's call after byte ``mark``, or every job ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(job.poll() is None for job in jobs):
        if calls.exists():
            with calls.open("rb") as handle:
                handle.seek(mark)
                if any(not line.startswith(b"session") for line in handle.read().splitlines()):
                    return
        time.sleep(0.01)


REFUSALS = (
    "is running in another session",  # the lease
    "is being written by another headrace session",  # the sink's lock
    "was started by another session just now",  # two new runs raced
    "already holds a run",  # a new run after the other created it
)


def _two_sessions_meet(run_dir: Path, source: Path, kind: str, output: str, calls: Path) -> None:
    """Arrange one meeting, however slow the machine: a session holding the run is
    frozen (SIGSTOP) once it works, and a second one started then must be refused."""
    mark = calls.stat().st_size if calls.exists() else 0
    first = _launch(run_dir, source, kind, output, calls)
    _wait_for_a_call([first], calls, mark)
    assert first.poll() is None, "the first session ended before it could be met"
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = _launch(run_dir, source, kind, output, calls)
        second.wait(timeout=300)
        stderr = second.stderr.read().decode() if second.stderr else ""  # type: ignore[union-attr]
        assert second.returncode not in (0, -9), "a second session ran beside the first"
        assert any(r in stderr for r in REFUSALS), f"refused otherwise:\n{stderr}"
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_two_sessions_at_once_with_kills_never_double_a_key(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Two sessions of one run started together, again and again, some killed: the
    lease lets one in and refuses the other in one line; nothing is lost or doubled
    and the columns stay where they belong."""
    seed = int(os.environ.get("HEADRACE_CHAOS_SEED", str(random.SystemRandom().randrange(10**9))))
    print(f"chaos seed {seed} ({kind}, two sessions at once)")
    rng = random.Random(seed)
    run_dir = tmp_path / request.getfixturevalue("run_name")
    source, calls = tmp_path / "in.jsonl", tmp_path / "calls.log"
    output = _output(kind, tmp_path, request)
    _write_input(source)
    _two_sessions_meet(run_dir, source, kind, output, calls)
    for _ in range(max(KILLS // 2, 5)):
        mark = calls.stat().st_size if calls.exists() else 0
        pair = [_launch(run_dir, source, kind, output, calls) for _ in range(2)]
        # both started: wait until one of them works (a step was called), however long
        # starting takes on a busy machine, then kill at a random moment after that
        _wait_for_a_call(pair, calls, mark)
        deadline = rng.uniform(0.05, 0.5)
        for job in pair:
            try:
                job.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait()
            stderr = job.stderr.read().decode() if job.stderr else ""  # type: ignore[union-attr]
            if job.returncode not in (0, -9):
                assert any(r in stderr for r in REFUSALS), (
                    f"seed {seed}: a job failed otherwise\n{stderr}"
                )
            deadline = 0.05  # the second of the pair: kill it soon if it still runs
    final = _launch(run_dir, source, kind, output, calls)
    final.wait(timeout=180)
    stderr = final.stderr.read().decode() if final.stderr else ""  # type: ignore[union-attr]
    assert final.returncode == 0, f"seed {seed}: the last session failed\n{stderr}"
    expected_out, _, _ = _expected()
    rows = _outputs(kind, output)
    keys = [str(row["id"]) for row in rows]
    assert len(keys) == len(set(keys)), f"seed {seed}: a key was written twice"
    assert {str(r["id"]): r["square"] for r in rows} == expected_out, f"seed {seed}"
