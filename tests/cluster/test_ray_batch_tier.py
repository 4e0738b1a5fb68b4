"""The batch tier on Ray: each shard a durable run with its own ledger, so every
request is submitted and billed once, on a cluster as on one machine, and a killed
driver's run resumed from the command line submits nothing twice."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import jsonl_ids, write_items
from services import run_quietly
from test_ray_sessions import _headrace, _reap

import headrace as hr
from headrace.llm.tier.ledger import Ledger
from headrace.sim import serve

# Ray starting on a machine whose cores are kept busy took minutes (the matrix's Ray cells:
# 220 s): a hang still fails, a loaded machine does not
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _ledgers(run_dir: Path) -> list[Any]:
    return [i for shard in sorted((run_dir / "shards").iterdir()) for i in Ledger(shard).intents()]


def test_each_shard_submits_its_own_batches_and_each_request_is_billed_once(
    local_ray: None, tmp_path: Path
) -> None:
    import ray_pipelines

    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 120), key="id")
    with serve(process=True, batch_turnaround_s=0.2) as sim:
        os.environ["RAY_BATCH_SIM"] = sim.url
        try:
            step = ray_pipelines._batch_ask()  # against this simulator, here and in workers
            options: dict[str, Any] = {"run_dir": tmp_path / "run"}
            options["backend"] = hr.Ray(workers=2, shard_size=40)
            sink = hr.write_jsonl(tmp_path / "out.jsonl")
            result = run_quietly(step, source, sink=sink, **options)
            again = run_quietly(
                step, source, sink=hr.write_jsonl(tmp_path / "out.jsonl"), **options
            )
        finally:
            os.environ.pop("RAY_BATCH_SIM", None)
        bill = sim.stats()["batch"]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result.items_out == 120 and len({r["id"] for r in rows}) == len(rows) == 120
    assert all(isinstance(r["answer"], str) and r["answer"] for r in rows)
    assert bill["billed_requests"] == 120 and bill["billed_again"] == 0
    assert bill["creates"] == 3 == len(_ledgers(tmp_path / "run"))  # one batch a shard
    stats = result.metrics.step("ask").llm
    assert stats is not None and stats.batch_requests == 120  # merged from the shards
    assert again.items_out == 0  # a finished run: nothing submitted again


def test_a_killed_driver_is_resumed_and_submits_nothing_twice(
    local_ray: None, tmp_path: Path
) -> None:
    write_items(tmp_path / "in.jsonl", 150)
    with serve(process=True, batch_turnaround_s=3.0) as sim:
        os.environ["RAY_BATCH_SIM"] = sim.url
        try:
            driver = _headrace(
                "run", "ray_pipelines:batch_ask", "--input", "in.jsonl", "--key", "id",
                "--output", "out.jsonl", "--run-dir", "run", "--backend", "ray",
                "--workers", "2", "--shard-size", "50",
                cwd=tmp_path,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 600
                while sim.stats()["batch"]["creates"] < 1:  # a batch at the provider
                    assert driver.poll() is None, driver.communicate()[0].decode()[-2000:]
                    assert time.monotonic() < deadline, "no batch was created in 600 s"
                    time.sleep(0.05)
                os.kill(driver.pid, signal.SIGKILL)
                driver.wait()
            finally:
                _reap(driver.pid)
            resumed = _headrace("resume", "run", cwd=tmp_path)
            try:
                output, _ = resumed.communicate(timeout=600)
            finally:
                _reap(resumed.pid)
        finally:
            os.environ.pop("RAY_BATCH_SIM", None)
        bill = sim.stats()["batch"]
    assert resumed.returncode == 0, output.decode()[-3000:]
    ids = jsonl_ids(tmp_path / "out.jsonl")
    assert len(ids) == 150 and Counter(ids).most_common(1)[0][1] == 1
    assert bill["billed_requests"] == 150 and bill["billed_again"] == 0
    intents = _ledgers(tmp_path / "run")
    assert bill["creates"] == len(intents) == 3  # the killed session's batches were found
