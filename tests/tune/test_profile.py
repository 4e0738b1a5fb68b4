"""``headrace profile``: the time of a CPU-bound thread step is that step's own code,
an async step's sleep is the loop waiting, and the flame graphs are well formed."""

from __future__ import annotations

import json
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headrace.cli import app
from headrace.io.records import Head, KeyedSource
from headrace.tune.profile import WAITING, StackSampler, profile_run, step_code

sys.path.insert(0, str(Path(__file__).parent))

import tune_job


def test_step_code_names_each_steps_function() -> None:
    codes = step_code(tune_job.cpu)
    assert sorted(codes.values()) == ["burn", "nap"]
    assert tune_job.burn.fn.__code__ in codes


def test_a_profiled_run_splits_the_time_between_steps_and_waiting(tmp_path: Path) -> None:
    done = profile_run(
        tune_job.burn >> tune_job.nap,
        Head(KeyedSource(range(10_000), key=None), 400),
        tmp_path / "run",
        interval_s=0.002,
        title="cpu",
    )
    assert done.result.items_in == 400 and done.result.items_out == 400
    assert (tmp_path / "run" / "output.jsonl").read_text().count("\n") == 400
    seen = done.profile
    own = "step burn: its own code"
    assert seen.threads[own] > 0 and 1 <= len(seen.thread_names[own]) <= 2
    assert seen.loop[WAITING] > 0  # nap's sleeps
    assert "step nap: its own code" not in seen.threads  # async: it runs on the loop
    assert seen.ticks > 0 and seen.wall_s > 0
    table = seen.table()
    assert table.startswith("the event loop's") and "step burn: its own code" in table
    measured = done.measured().splitlines()
    assert measured[0] == "thread steps, measured by their calls:"
    assert measured[1].startswith("  step burn: ") and "s of CPU in" in measured[1]

    profile = json.loads((tmp_path / "run" / "profile.speedscope.json").read_text())
    frames = profile["shared"]["frames"]
    assert {p["name"] for p in profile["profiles"]} == {"event loop", "worker threads"}
    for one in profile["profiles"]:
        assert len(one["samples"]) == len(one["weights"]) > 0
        assert all(0 <= i < len(frames) for stack in one["samples"] for i in stack)
        assert one["endValue"] == pytest.approx(sum(one["weights"]), abs=1e-3)
    assert any(f["name"] == "burn" for f in frames)
    svg = ET.parse(tmp_path / "run" / "profile.svg").getroot()
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("burn (tune_job.py:") for t in titles)


def test_a_model_loading_is_its_own_line_not_the_step_s_code() -> None:
    from headrace.models.model_step import load_once

    def run_batch(texts: list[str]) -> list[int]:  # a model step's code, loading first
        load_once(("profile-test", id(texts)), lambda: _spin_until(seen, 30))
        return [len(t) for t in texts]

    worker = threading.Thread(target=run_batch, args=(["a", "bb"],), name="model")
    with StackSampler({run_batch.__code__: "embed"}, threading.get_ident(), 0.001) as seen:
        worker.start()
        worker.join()
    assert seen.threads["step embed: loading its model"] > 0
    assert "step embed: its own code" not in seen.threads


def _spin_until(seen: StackSampler, ticks: int) -> object:
    while seen.ticks < ticks:
        sum(range(2000))
    return object()


def test_an_idle_worker_thread_is_left_out() -> None:
    done = threading.Event()
    idle = threading.Thread(target=done.wait, name="idle")
    idle.start()
    try:
        with StackSampler({}, threading.get_ident(), 0.001) as seen:
            while seen.ticks < 20:
                sum(range(1000))
    finally:
        done.set()
        idle.join()
    assert "idle" not in {name for names in seen.thread_names.values() for name in names}
    assert seen.ticks >= 20 and sum(seen.loop.values()) > 0


def test_profile_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tune_job")
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(30)))
    run_dir = tmp_path / "prof"
    args = ["profile", "tune_job:calls", "--input", str(sample), "--key", "id", "--limit", "20"]
    args += ["--sim", "latency_ms=5", "--run-dir", str(run_dir), "--interval-ms", "1"]
    answer = CliRunner().invoke(app, args, catch_exceptions=False)
    assert answer.exit_code == 0, answer.output
    assert answer.output.startswith("headrace profile: 20 items in ")
    assert "the event loop's" in answer.output and WAITING in answer.output
    assert f"written: {run_dir / 'profile.svg'}" in answer.output
    assert (run_dir / "output.jsonl").read_text().count("\n") == 20
    assert not list(run_dir.glob("*.partial"))  # each file written whole, then renamed
    again = CliRunner().invoke(app, args, catch_exceptions=False)  # started afresh each time
    assert again.exit_code == 0 and (run_dir / "output.jsonl").read_text().count("\n") == 20
