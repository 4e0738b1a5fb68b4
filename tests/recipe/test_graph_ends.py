"""A graph run ends: a failing or filtering node cancels its slow siblings, in every
order, in sub-graphs and in maps; and Ctrl-C ends a graph run with the resume hint.

Each test carries a timeout far below a slow sibling's sleep, so a run that would
hang (issue: a sibling cancelled before its first step kept the item open forever)
fails the test instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr

FOREVER = 3600.0


class Spy:
    """Counts the slow sibling's starts and cancellations."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0

    def slow(self, name: str = "slow") -> hr.Step[Any, Any]:
        async def body(value: Any) -> str:
            self.started += 1
            try:
                await asyncio.sleep(FOREVER)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return "never"

        return hr.step(body, name=name)


@hr.step
def broken(value: Any) -> str:
    raise ValueError("broken on purpose")


@hr.step
def passthrough(value: Any) -> Any:
    return value


SHAPES = [
    ("[slow, broken] -> j", {"slow", "broken", "j"}),
    ("[broken, slow] -> j", {"slow", "broken", "j"}),
    ("a -> [broken, slow]", {"a", "slow", "broken"}),
    ("a -> [slow, broken]", {"a", "slow", "broken"}),
    ("slow -> j; broken -> j", {"slow", "broken", "j"}),
    ("a -> slow -> j; a -> broken -> j", {"a", "slow", "broken", "j"}),
]


def build(edges: str, names: set[str], spy: Spy, failing: Any = broken) -> hr.Step[Any, Any]:
    steps: dict[str, Any] = {}
    for name in sorted(names):
        if name == "slow":
            steps[name] = spy.slow()
        elif name == "broken":
            steps[name] = failing
        elif name == "j":
            steps[name] = hr.node()
        else:
            steps[name] = passthrough
    return hr.graph(steps, [e.strip() for e in edges.split(";")])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("edges", "names"), SHAPES, ids=[s[0] for s in SHAPES])
def test_a_failing_node_cancels_its_slow_sibling_and_the_run_ends(
    edges: str, names: set[str]
) -> None:
    spy = Spy()
    result = run_quietly(build(edges, names, spy), [{"text": "x"}])
    [dead] = result.dead_letters
    assert dead.step == "broken" and "broken on purpose" in dead.message
    assert result.items_dead == 1 and result.items_out == 0
    # the slow sibling either never started or was cancelled: none is left running
    assert spy.started == spy.cancelled


@pytest.mark.timeout(30)
def test_many_items_with_a_failing_and_a_slow_branch_all_end() -> None:
    spy = Spy()
    pipeline = build("[slow, broken] -> j", {"slow", "broken", "j"}, spy)
    result = run_quietly(pipeline, [{"n": n} for n in range(50)], window=8)
    assert result.items_dead == 50
    assert spy.started == spy.cancelled


@pytest.mark.timeout(30)
def test_a_filter_node_cancels_its_slow_sibling() -> None:
    spy = Spy()
    steps = {"slow": spy.slow(), "drop": hr.node(keep=lambda names: False), "j": hr.node()}
    result = run_quietly(hr.graph(steps, ["[drop, slow] -> j"]), [{"t": 1}])
    assert result.items_filtered == 1 and result.items_dead == 0
    assert spy.started == spy.cancelled


@pytest.mark.timeout(30)
def test_a_failure_inside_a_sub_graph_cancels_the_outer_sibling() -> None:
    spy = Spy()
    inner = hr.graph({"a": passthrough, "broken": broken}, ["a -> broken"]).named("inner")
    steps = {"slow": spy.slow(), "inner": inner, "j": hr.node()}
    result = run_quietly(hr.graph(steps, ["[slow, inner] -> j"]), [{"t": 1}])
    assert result.items_dead == 1
    assert spy.started == spy.cancelled


@pytest.mark.timeout(30)
def test_a_failing_element_of_a_map_cancels_the_slow_elements() -> None:
    spy = Spy()
    slow = spy.slow("element")

    @hr.step
    async def element(value: str) -> str:
        if value == "bad":
            raise ValueError("bad element")
        return str(await slow.fn(value))  # type: ignore[attr-defined]

    mapped = hr.map(element, over="words", name="each")
    steps = {"each": mapped, "other": spy.slow(), "j": hr.node()}
    pipeline = hr.graph(steps, ["[each, other] -> j"])
    result = run_quietly(pipeline, [{"words": ["a", "b", "bad", "c"]}])
    assert result.items_dead == 1 and "bad element" in result.dead_letters[0].message
    assert spy.started == spy.cancelled


GRAPH_JOB = """
import asyncio
import pathlib
import headrace as hr

@hr.step
async def slow(r):
    pathlib.Path("started").touch()  # the run is mid-flight: Ctrl-C lands inside it
    await asyncio.sleep(3600)
    return "never"

@hr.step
def fast(r):
    return r

pipeline = hr.graph({"slow": slow, "fast": fast, "j": hr.node()}, ["[fast, slow] -> j"])
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_ends_a_graph_run_with_the_resume_hint(tmp_path: Path) -> None:
    (tmp_path / "graph_job.py").write_text(GRAPH_JOB)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": {n}}}\n' for n in range(20)))
    command = [sys.executable, "-m", "headrace", "run", "graph_job:pipeline"]
    command += ["--input", "in.jsonl", "--key", "id", "--output", "out", "--run-dir", "state"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    job = subprocess.Popen(
        command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():  # a slow node is running
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=30)
    assert job.returncode != 0
    assert "interrupted; finish it with: headrace resume state" in stderr
