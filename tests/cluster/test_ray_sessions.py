"""Sessions of a run on Ray: a killed driver resumed from the command line, and a
shard whose holder stopped heartbeating taken over."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import ray_pipelines
from conftest import HERE, jsonl_ids, write_items
from services import run_quietly

import headrace as hr
from headrace.cluster.shards import shard_location
from headrace.store import StoreLocation
from headrace.store.lease import STALE_S

pytestmark = pytest.mark.slow


def _headrace(*arguments: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "RAY_ADDRESS": "",  # a local Ray of its own, not the tests' one
    }
    return subprocess.Popen(
        [sys.executable, "-m", "headrace", *arguments],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _reap(group: int) -> None:
    """Kill whatever is left of a process group (Ray's own processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def test_a_killed_driver_resumes_from_the_command_line_exactly_once(
    tmp_path: Path, postgres_url: str, shard_runs: str
) -> None:
    count = 600
    write_items(tmp_path / "in.jsonl", count)
    run_dir = f"runs/{shard_runs}"
    driver = _headrace(
        "run", "ray_pipelines:slow_double", "--input", "in.jsonl", "--key", "id",
        "--output", "out.jsonl", "--run-dir", run_dir, "--run-store", postgres_url,
        "--backend", "ray", "--workers", "2", "--shard-size", "50",
        cwd=tmp_path,
    )  # fmt: skip
    shards = tmp_path / "out.jsonl.shards"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            written = sum(p.read_bytes().count(b"\n") for p in shards.glob("*.jsonl"))
            if written >= 150:
                break
            time.sleep(0.05)
        assert driver.poll() is None, driver.communicate()[0].decode()[-2000:]
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its workers die with it
        driver.wait()
    finally:
        _reap(driver.pid)  # what the killed driver left of its Ray
    assert not (tmp_path / "out.jsonl").exists() or len(jsonl_ids(tmp_path / "out.jsonl")) < count
    resumed = _headrace("resume", run_dir, "--run-store", postgres_url, cwd=tmp_path)
    try:
        output, _ = resumed.communicate(timeout=240)
    finally:
        _reap(resumed.pid)
    assert resumed.returncode == 0, output.decode()[-3000:]
    assert b"skipped" in output or b"items: in" in output
    ids = jsonl_ids(tmp_path / "out.jsonl")
    assert len(ids) == count and Counter(ids).most_common(1)[0][1] == 1
    assert ids == sorted(ids)  # joined in source order


def test_a_shard_whose_holder_stopped_beating_is_taken_over(
    local_ray: None, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    held = shard_location(StoreLocation(run_dir), 1)
    store = held.open()  # a worker on another machine took shard 1, then went silent
    store.acquire_lease()
    store.close()
    with sqlite3.connect(held.run_dir / "run.sqlite") as db:
        db.execute(
            "UPDATE lease SET host = 'elsewhere', heartbeat = ?", (time.time() - STALE_S + 2,)
        )
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id")
    result = run_quietly(
        ray_pipelines.double,
        source,
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=run_dir,
        backend=hr.Ray(workers=2, shard_size=50),
    )
    assert result.items_in == 200
    ids = jsonl_ids(tmp_path / "out.jsonl")
    assert len(ids) == len(set(ids)) == 200 - 3  # items 5, 102 and 199 are dead letters
    store = held.open()
    try:
        lease, status = store.lease(), store.status()
    finally:
        store.close()
    assert lease is None  # taken over from the silent holder, then given back at the end
    assert status.total == 50 and status.pending == 0


RECIPE = """
name: tripled
paths: ["."]
source: {jsonl: in.jsonl, key: id}
sink: {jsonl: out.jsonl}
nodes:
  - id: triple
    function: triple_steps:triple
run: {backend: ray, workers: 2, shard_size: 40}
"""


def test_a_recipe_runs_on_ray_and_status_shows_its_shards(tmp_path: Path) -> None:
    write_items(tmp_path / "in.jsonl", 150)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "triple_steps.py").write_text(
        "def triple(item):\n    return {'id': item['id'], 'triple': item['n'] * 3}\n"
    )
    ran = _headrace("run", "recipe.yaml", "--run-dir", "runs/tripled", cwd=tmp_path)
    try:
        output, _ = ran.communicate(timeout=240)
    finally:
        _reap(ran.pid)
    assert ran.returncode == 0, output.decode()[-3000:]
    ids = jsonl_ids(tmp_path / "out.jsonl")
    assert ids == sorted(ids) and len(set(ids)) == 150
    shown = subprocess.run(
        [sys.executable, "-m", "headrace", "status", "runs/tripled"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "finished  150: done 150, dead 0" in shown
    assert "pending   0 of 150" in shown
    assert "shards    4: 4 finished, 0 running, 0 waiting" in shown
