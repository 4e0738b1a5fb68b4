"""Kill a durable run with SIGKILL at random moments; resume until done; nothing lost or doubled.

20 kills per sink kind by default; HEADRACE_CHAOS_KILLS=200 for a longer run.
The seed is printed; HEADRACE_CHAOS_SEED=<n> replays one.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from headrace.store.sqlite import SqliteRunStore

HERE = Path(__file__).parent
JOB = HERE / "chaos_job.py"
KILLS = int(os.environ.get("HEADRACE_CHAOS_KILLS", "20"))
ITEMS = max(5000, KILLS * 250)  # enough work that every kill lands mid-run


def _write_input(path: Path) -> None:
    with path.open("w") as handle:
        for n in range(ITEMS):
            handle.write(json.dumps({"id": f"item-{n:05d}", "n": n}) + "\n")


def _launch(
    run_dir: Path, source: Path, kind: str, output: Path, calls: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(JOB), str(run_dir), str(source), kind, str(output), str(calls)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _outputs(kind: str, output: Path) -> list[dict[str, object]]:
    files = [output] if kind == "jsonl" else sorted(output.glob("batch_*.jsonl"))
    rows = []
    for path in files:
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


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
@pytest.mark.parametrize("kind", ["jsonl", "batches"])
def test_sigkill_at_random_moments_then_resume_is_exactly_once(tmp_path: Path, kind: str) -> None:
    kills_wanted = KILLS
    seed = int(os.environ.get("HEADRACE_CHAOS_SEED", str(random.SystemRandom().randrange(10**9))))
    print(f"chaos seed {seed} ({kind}, {kills_wanted} kills)")
    rng = random.Random(seed)
    source, run_dir, calls = tmp_path / "in.jsonl", tmp_path / "run", tmp_path / "calls.log"
    output = tmp_path / ("out.jsonl" if kind == "jsonl" else "out")
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

    store = SqliteRunStore.in_dir(run_dir)
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
    session_of: dict[str, int] = {}
    called_in: dict[str, set[int]] = defaultdict(set)
    for line in calls.read_text().splitlines():
        parts = line.split()
        if parts[0] == "session":
            session_of[parts[1]] = int(parts[2])
        else:
            called_in[parts[1]].add(session_of[parts[0]])
    recomputed = {
        key: sorted(sessions)
        for key, sessions in called_in.items()
        if max(sessions) > committed_in[key]
    }
    assert recomputed == {}, f"seed {seed}: finished items were computed again: {recomputed}"
    assert set(called_in) == set(committed_in)
