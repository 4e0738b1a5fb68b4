"""A durable run's time series: written while it runs, kept across a kill and a resume,
bounded for a long run, and readable when damaged."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from services import JOBS, run_quietly

import headrace as hr
from headrace.metrics import Histogram
from headrace.metrics.timeline import Timeline
from headrace.store import SqliteRunStore, StoreLocation

JOB = str(JOBS / "slow_job.py")


def test_a_durable_run_records_its_metrics_over_time(tmp_path: Path) -> None:
    @hr.step(concurrency=2)
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    seen: list[Any] = []

    def look(out: int) -> None:  # a look at the store while the run goes on
        if out == 250:
            store = SqliteRunStore.in_dir(tmp_path)
            seen.extend(store.samples())
            store.close()

    result = run_quietly(slow, range(300), sink=look, run_dir=tmp_path)
    assert seen and 0 < seen[-1].data["items"]["out"] < 300  # a row written while it ran
    store = SqliteRunStore.in_dir(tmp_path)
    try:
        samples = store.samples()
    finally:
        store.close()
    assert {s.session for s in samples} == {1}
    last = samples[-1].data
    assert last["items"]["out"] == result.items_out == 300
    assert last["total"] == 300 and last["in_flight"] == 0
    step = last["steps"][0]
    assert step["name"] == "slow" and step["calls"] == 300
    histogram = Histogram.from_sparse(step["latency_hist"])
    assert histogram.count == 300
    median = result.metrics.step("slow").latency.quantile(0.5)
    assert histogram.quantile(0.5) == pytest.approx(median)
    times = [s.t for s in samples]
    assert times == sorted(times)


def test_an_in_memory_run_writes_no_series(tmp_path: Path) -> None:
    run_quietly(lambda x: x, range(10))
    assert list(tmp_path.iterdir()) == []


def test_the_series_survives_a_kill_and_goes_on_in_the_resumed_session(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    job = subprocess.Popen(
        [sys.executable, JOB, str(run_dir), "2000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until two rows are in (the run takes ~5 s)
            if (run_dir / "run.sqlite").exists():
                store = SqliteRunStore.in_dir(run_dir)
                try:
                    rows = store.samples()
                finally:
                    store.close()
                if len(rows) >= 2 and rows[-1].data["items"]["out"] > 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the job wrote no time series")
        assert job.poll() is None, "the job ended before it was killed"
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=30)

    @hr.step(concurrency=4)
    async def slow(x: int) -> dict[str, int]:
        return {"x": x}

    # the resume is a new session of the same run (same step name and code identity
    # are not required here: force accepts the changed function)
    run_quietly(slow, range(2000), run_dir=run_dir, resume=True, force=True)
    store = SqliteRunStore.in_dir(run_dir)
    try:
        samples = store.samples()
        sessions = store.sessions()
    finally:
        store.close()
    first = [s for s in samples if s.session == 1]
    second = [s for s in samples if s.session == 2]
    assert first and second and [n for n, *_ in sessions] == [1, 2]
    assert first[-1].t < second[0].t  # one time axis
    end = second[-1].data["items"]
    # the resumed session's last row accounts for every item: finished before, or now
    assert end["skipped"] + end["out"] + end["dead"] + end["filtered"] == 2000
    assert end["skipped"] > 0


class StoreWriter:
    """The part of the run's writer the timeline uses, straight onto a store."""

    def __init__(self, store: SqliteRunStore) -> None:
        self.store = store

    async def sample(self, seq: int, t: float, data: dict[str, Any], *, thin: bool) -> None:
        if thin:
            self.store.thin_samples(1)
        self.store.record_sample(1, seq, t, data)


def test_a_long_run_keeps_a_bounded_evenly_spread_series(tmp_path: Path) -> None:
    store = SqliteRunStore.in_dir(tmp_path)
    now = [1_000_000.0]
    done = [0]

    def snapshot() -> dict[str, Any]:
        return {"items": {"out": done[0]}, "steps": []}

    timeline = Timeline(
        snapshot, StoreWriter(store), interval_s=2.0, max_rows=100, clock=lambda: now[0]
    )  # type: ignore[arg-type]

    async def hours(n: float) -> None:
        for _ in range(int(n * 3600)):  # a tick a second
            done[0] += 10
            now[0] += 1.0
            await timeline.tick()

    asyncio.run(hours(6))
    samples = store.samples()
    store.close()
    assert len(samples) <= 100
    assert len(samples) >= 50
    gaps = [b.t - a.t for a, b in itertools.pairwise(samples)]
    assert max(gaps) <= 2 * timeline.interval_s
    assert min(gaps[:-1]) >= timeline.interval_s / 2  # evenly spread, the last row aside
    assert samples[0].data["items"]["out"] == 20  # the first row: its first interval's end
    assert samples[-1].data["items"]["out"] == 6 * 3600 * 10  # the last is the latest state
    outs = [s.data["items"]["out"] for s in samples]
    assert outs == sorted(outs)


def test_damaged_rows_are_left_out_of_the_series(tmp_path: Path) -> None:
    run_quietly(lambda x: x, range(20), run_dir=tmp_path)
    with sqlite3.connect(tmp_path / SqliteRunStore.FILENAME) as damage:  # behind its back
        damage.execute("INSERT INTO samples VALUES (1, 90, 1.0, '{not json')")
        damage.execute("INSERT INTO samples VALUES (1, 91, 2.0, '[1, 2]')")
        damage.execute("INSERT INTO samples VALUES (1, 92, 3.0, ?)", (json.dumps({"steps": 5}),))
    db = SqliteRunStore.in_dir(tmp_path)
    samples = db.samples()
    db.close()
    assert [s.seq for s in samples][-1] == 92  # the two that are not objects are left out
    assert all(isinstance(s.data, dict) for s in samples)
    assert not any(s.seq in (90, 91) for s in samples)


def test_a_postgres_run_keeps_its_series_there(
    tmp_path: Path, postgres_url: str, run_name: str
) -> None:
    run_dir = tmp_path / run_name
    run_quietly(lambda x: x, range(50), run_dir=run_dir, run_store=postgres_url)
    store = StoreLocation(run_dir, postgres_url).open()
    try:
        samples = store.samples()
        store.thin_samples(1)
        assert [s.seq for s in store.samples()] == [s.seq for s in samples][::2] + (
            [samples[-1].seq] if len(samples) % 2 == 0 else []
        )
        assert store.sessions()[0][0] == 1
    finally:
        store.discard()
        store.close()
    assert samples and samples[-1].data["items"]["out"] == 50


def test_a_steps_tokens_go_on_across_sessions_as_the_cost_does() -> None:
    from headrace.report.series import RunSeries
    from headrace.store.run_store import Sample

    def row(session: int, seq: int, t: float, tokens: int, cost: float) -> Sample:
        step = {"name": "tone", "llm": {"prompt_tokens": tokens}}
        return Sample(session, seq, t, {"wall_s": 1.0, "cost_usd": cost, "steps": [step]})

    series = RunSeries.of(
        [row(1, 1, 10, 100, 0.1), row(1, 2, 11, 300, 0.3), row(2, 1, 20, 50, 0.05)]
    )
    tokens = series.cumulative_step("tone", "llm", "prompt_tokens", label="tone prompt")
    assert [y for _, y in tokens.points] == [100, 300, 350]  # not back to 50
    assert [round(y, 2) for _, y in series.cumulative("cost_usd").points] == [0.1, 0.3, 0.35]


def test_slots_working_are_never_more_than_the_step_has() -> None:
    from headrace.report.series import RunSeries
    from headrace.store.run_store import Sample

    def row(seq: int, t: float, busy: float) -> Sample:
        step = {"name": "embed", "slots": 1, "busy_s": busy, "wait_s": 0.0}
        return Sample(1, seq, t, {"wall_s": t - 100, "steps": [step]})

    # a 2.5 s model batch ends in a 1 s interval: counted there, but one slot at most
    series = RunSeries.of([row(1, 101, 0.0), row(2, 102, 2.5), row(3, 103, 2.5)])
    working, _, ceiling = series.slots("embed")
    assert max(y for _, y in working.points) == 1.0
    assert {y for _, y in ceiling.points} == {1.0}
