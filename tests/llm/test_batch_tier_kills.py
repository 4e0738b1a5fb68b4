"""The batch tier's promise under kills: every request answered once and paid for at
most once, every key once in the sink, no batch forgotten at the provider."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from services import JOBS

from headrace.llm.tier.ledger import Ledger
from headrace.sim import SimServer, serve

ITEMS = 25
JOB = JOBS / "batch_job.py"
POINTS = ["intended", "uploaded", "created", "polling", "downloaded", "kept", "collected"]


def _source(folder: Path, n: int = ITEMS) -> Path:
    source = folder / "records.jsonl"
    rows = (json.dumps({"id": f"r{i:03d}", "text": f"record number {i}"}) for i in range(n))
    source.write_text("".join(row + "\n" for row in rows))
    return source


def _job(
    sim: SimServer, folder: Path, source: Path, kill_at: str | None = None, api: str = "openai"
) -> int:
    command = [sys.executable, str(JOB), sim.url, str(folder / "run"), str(source)]
    command += [str(folder / "out.jsonl"), *([kill_at] if kill_at else [])]
    path = os.pathsep.join([str(JOBS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "BATCH_API": api}
    return subprocess.run(command, env=env, timeout=300, capture_output=True).returncode


def _check_exactly_once(
    sim: SimServer, folder: Path, n: int = ITEMS, api: str = "openai"
) -> dict[str, Any]:
    keys = [json.loads(line)["id"] for line in (folder / "out.jsonl").read_text().splitlines()]
    assert sorted(keys) == [f"r{i:03d}" for i in range(n)]  # every key, once
    stats = sim.stats()["batch"]
    assert stats["billed_requests"] == n and stats["billed_again"] == 0  # each paid once
    if api == "anthropic":
        claude = anthropic.Anthropic(base_url=sim.root, api_key="sim", max_retries=0)
        at_provider = {b.id for b in claude.messages.batches.list(limit=100)}
    else:
        provider = openai.OpenAI(base_url=sim.url, api_key="sim", max_retries=0)
        at_provider = {b.id for b in provider.batches.list(limit=100)}
    known = {i.batch_id for i in Ledger(folder / "run").intents()}
    assert at_provider <= known  # no batch the run does not know of
    assert stats["creates"] == len(at_provider)  # each create made a batch: none sent twice
    return stats


@pytest.fixture(scope="module")
def sim() -> Any:
    with serve(process=True, batch_turnaround_s=0.3) as server:
        yield server


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_point_of_the_protocol_submits_and_bills_nothing_twice(
    sim: SimServer, tmp_path: Path, point: str
) -> None:
    sim.reset()
    source = _source(tmp_path)
    assert _job(sim, tmp_path, source, point) == -signal.SIGKILL
    if point == "polling":  # what the kill left at the provider, as status shows it
        shown = subprocess.run(
            ["headrace", "status", str(tmp_path / "run")], capture_output=True, text=True
        ).stdout
        assert "batches   1: submitted 1" in shown and "10 at the provider" in shown
    assert _job(sim, tmp_path, source) == 0
    stats = _check_exactly_once(sim, tmp_path)
    assert stats["creates"] == 3  # 25 requests in batches of 10: three, each created once


def test_a_create_whose_answer_is_lost_is_found_not_sent_again(tmp_path: Path) -> None:
    with serve(process=True, batch_turnaround_s=0.2, batch_lose_creates=2) as sim:
        assert _job(sim, tmp_path, _source(tmp_path)) == 0
        stats = _check_exactly_once(sim, tmp_path)
    # two creates lost their answers; each batch was found by its intent, never sent again
    assert stats["creates"] == 3 and stats["creates_lost"] == 2


@pytest.mark.slow
def test_random_kills_with_errors_and_expiries_lose_nothing_and_pay_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    config = {"batch_turnaround_s": 0.4, "batch_error_rate": 0.2, "batch_finish_share": 0.7}
    with serve(process=True, batch_lose_creates=1, **config) as sim:
        source = _source(tmp_path, 60)
        command = [sys.executable, str(JOB), sim.url, str(tmp_path / "run"), str(source)]
        command.append(str(tmp_path / "out.jsonl"))
        env = {**os.environ, "PYTHONPATH": str(JOBS)}
        for _ in range(8):  # killed at random moments: starting, submitting, polling, ...
            job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            try:
                job.wait(timeout=rng.uniform(0.5, 4.0))
            except subprocess.TimeoutExpired:
                job.send_signal(signal.SIGKILL)
            job.wait()
        assert subprocess.run(command, env=env, timeout=300).returncode == 0  # then to its end
        _check_exactly_once(sim, tmp_path, 60)


@pytest.mark.parametrize("point", ["intended", "created", "polling", "downloaded", "collected"])
def test_anthropic_batches_under_a_kill_at_each_point_are_submitted_and_billed_once(
    sim: SimServer, tmp_path: Path, point: str
) -> None:
    sim.reset()
    source = _source(tmp_path)
    assert _job(sim, tmp_path, source, point, "anthropic") == -signal.SIGKILL
    assert _job(sim, tmp_path, source, api="anthropic") == 0
    stats = _check_exactly_once(sim, tmp_path, api="anthropic")
    assert stats["creates"] == 3


def test_a_session_whose_run_was_taken_over_sends_no_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The freeze case: a session stopped between recording its upload and creating the
    batch, its run taken over meanwhile. Its lease is renewed before the create: it
    finds another holder and sends nothing; the run's next session creates the batch
    once."""
    import sqlite3

    import headrace as hr

    save = Ledger.save

    def taken_over_after_the_upload(self: Ledger, intent: Any) -> None:
        save(self, intent)
        if intent.state == "uploaded":  # another session takes the run (an old heartbeat)
            with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
                db.execute("UPDATE lease SET holder = 'another session', heartbeat = 0")

    records = [{"id": f"r{i}", "text": f"record {i}"} for i in range(5)]
    with serve(batch_turnaround_s=0.1) as sim:
        client = hr.llm.Client(base_url=sim.url)
        step = hr.llm.complete(client=client, model="sim-chat", prompt="{text}",
                               tier=hr.llm.BatchTier(gather=0.05, poll=0.05))  # fmt: skip
        monkeypatch.setattr(Ledger, "save", taken_over_after_the_upload)
        fenced = hr.run(step, records, run_dir=tmp_path / "run", progress=False)
        assert fenced.stopped is not None and "taken over by another session" in fenced.stopped
        assert fenced.items_out == 0 and sim.stats()["batch"]["creates"] == 0  # nothing sent
        monkeypatch.setattr(Ledger, "save", save)
        again = hr.run(step, records, run_dir=tmp_path / "run", progress=False)
        bill = sim.stats()["batch"]
    assert again.items_out == 5 and bill["creates"] == 1 and bill["billed_requests"] == 5
