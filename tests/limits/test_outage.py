"""A provider that is down is an outage, not a dataset of dead letters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import JOBS, free_port, run_quietly

import headrace as hr
from headrace.sim import serve

FAST = hr.Retry(attempts=3, backoff=0.001, max_delay=0.002, budget=None)


def closed_port() -> str:
    """The URL of a loopback port nothing listens on: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def records(count: int) -> list[dict[str, str]]:
    return [{"text": f"t{n}"} for n in range(count)]


def test_a_down_endpoint_stops_the_run_resumable_with_no_dead_letter(tmp_path: Path) -> None:
    circuit = hr.Circuit(failures=3, reset=0.05, max_outage=0.3)
    # one identity: the provider comes back at another address (the port the sim got)
    llm = hr.llm.Client(base_url=closed_port(), retry=FAST, circuit=circuit, identity="p")
    say = hr.llm.complete(prompt="Say {text}", client=llm, model="m", concurrency=4)
    result = run_quietly(say, records(200), run_dir=tmp_path / "run")
    assert result.items_dead == 0
    assert not result.ok
    # the window filled with held items, then the run stopped taking any
    assert result.items_in <= 64 and result.items_unfinished == result.items_in
    assert result.stopped is not None and "looks down" in result.stopped
    assert "max_outage 0.3 s" in result.stopped and "last error: " in result.stopped
    step = result.metrics.step("complete")
    state = step.circuit
    assert state is not None and state.opened >= 2  # it probed again after opening
    # the calls held by the open circuit were waiting, not working (refused connections
    # take no time; the holds took the outage's)
    assert step.hold_s > 0 and step.working_s() < step.hold_s
    assert step.to_dict()["wait_s"] >= round(step.hold_s, 6)
    # later, with the provider back, a resume finishes every item exactly once
    with serve() as sim:
        back = hr.llm.Client(base_url=sim.url, retry=FAST, identity="p")
        say = hr.llm.complete(prompt="Say {text}", client=back, model="m", concurrency=4)
        done = run_quietly(say, records(200), run_dir=tmp_path / "run", resume=True)
        assert sim.stats()["requests"] == 200
    assert done.ok and done.items_out == 200
    lines = (tmp_path / "run" / "outputs.jsonl").read_text().splitlines()
    assert len(lines) == 200


def test_at_concurrency_1_the_first_item_of_an_outage_is_held_not_dead(tmp_path: Path) -> None:
    """Five failures open the circuit and an item has three attempts: the first item
    spends them before the circuit opens, with nobody answered meanwhile, so it is
    not blamed for the outage: it goes on until the circuit opens, and is held."""
    circuit = hr.Circuit(failures=5, reset=0.05, max_outage=0.3)
    llm = hr.llm.Client(base_url=closed_port(), retry=FAST, circuit=circuit)
    say = hr.llm.complete(prompt="Say {text}", client=llm, model="m", concurrency=1)
    result = run_quietly(say, records(20), run_dir=tmp_path / "run")
    assert result.items_dead == 0 and result.items_out == 0
    assert result.stopped is not None and "looks down" in result.stopped


def test_a_function_step_at_concurrency_1_holds_its_first_item_through_an_outage() -> None:
    calls = 0

    @hr.step(concurrency=1, retry=FAST, circuit=hr.Circuit(failures=5, reset=0.02))
    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls <= 7:  # more failures than the first item's three attempts
            raise ConnectionError("refused")
        return x

    result = run_quietly(flaky, range(10))
    assert result.ok and sorted(result.outputs) == list(range(10))
    state = result.metrics.step("flaky").circuit
    assert state is not None and state.opened >= 1


def test_an_item_that_fails_alone_while_others_are_answered_is_still_dead() -> None:
    calls: dict[int, int] = {}

    @hr.step(concurrency=2, retry=FAST, circuit=hr.Circuit(failures=5, reset=0.02))
    async def picky(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if x == 3:
            raise ConnectionError("only item 3 breaks the connection")
        return x

    result = run_quietly(picky, range(40))
    assert result.items_out == 39 and [d.index for d in result.dead_letters] == [3]
    assert result.dead_letters[0].attempts == calls[3] >= 3
    state = result.metrics.step("picky").circuit
    assert state is not None and state.opened == 0


def test_when_open_fail_still_fails_fast_for_a_fallback() -> None:
    calls = 0

    @hr.step
    async def backup(x: int) -> str:
        return f"backup {x}"

    @hr.step(concurrency=1, circuit=hr.Circuit(failures=2, reset=60, when_open="fail"))
    async def primary(x: int) -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    result = run_quietly(primary.with_options(fallback=backup), range(10))
    assert calls == 2 and result.items_out == 10


def test_a_function_steps_circuit_holds_items_through_an_outage() -> None:
    state = {"calls": 0, "down_until": 6}

    circuit = hr.Circuit(failures=2, reset=0.02)

    @hr.step(concurrency=2, retry=FAST, circuit=circuit)
    async def flaky(x: int) -> int:
        state["calls"] += 1
        if state["calls"] <= state["down_until"]:
            raise ConnectionError("refused")
        return x

    result = run_quietly(flaky, range(20))
    # FAST gives each item 3 attempts: without the circuit, items would have died
    assert result.ok and sorted(result.outputs) == list(range(20))
    state = result.metrics.step("flaky").circuit
    assert state is not None and state.settings is circuit
    assert state.opened >= 2 and state.held > 0
    assert f"circuit closed: opened {state.opened} times, held " in result.summary()


def test_items_waiting_in_a_micro_batcher_count_as_the_steps_wait() -> None:
    passed: list[int] = []
    both = asyncio.Event()

    @hr.step
    async def late(x: int) -> int:
        if x == 0:  # once items 1 and 2 wait in the batcher, it holds their batch 0.1 s
            await both.wait()
            await asyncio.sleep(0.1)
        else:
            passed.append(x)
            if len(passed) == 2:
                both.set()
        return x

    @hr.step(batch=hr.Batch(max_size=3, max_wait=60))
    async def batched(xs: list[int]) -> list[int]:
        return xs

    result = run_quietly(late >> batched, range(3))
    step = result.metrics.step("batched")
    assert step.batch_sizes == {3: 1}
    # two items waited in the batcher through the 0.1 s sleep (the second may have
    # entered a moment after it began): without counting it, the wait would be ~0
    assert step.wait_s >= 0.1 + 0.05


def test_connection_errors_never_halve_a_batch() -> None:
    calls: list[int] = []

    @hr.step(batch=hr.Batch(max_size=8, max_wait=0.01))
    async def down(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        raise ConnectionError("refused")

    result = run_quietly(down, range(8))
    assert calls == [8]  # no halving: it would only repeat the outage
    assert result.items_dead == 8
    assert result.metrics.step("down").batch_splits == 0


def test_an_items_fault_still_halves_a_batch() -> None:
    calls: list[int] = []

    @hr.step(batch=hr.Batch(max_size=8, max_wait=0.01))
    async def picky(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        if 3 in xs:
            raise ValueError("3 is poison")
        return xs

    result = run_quietly(picky, range(8))
    assert result.items_dead == 1 and result.items_out == 7
    assert result.metrics.step("picky").batch_splits == 3


def test_a_batch_returning_the_wrong_count_reports_it_as_it_was() -> None:
    calls: list[int] = []

    @hr.step(batch=hr.Batch(max_size=3, max_wait=0.01))
    def short(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        return xs[:2]

    result = run_quietly(short, range(3))
    assert calls == [3]  # not halved: the function is at fault, not an item
    assert {d.error_type for d in result.dead_letters} == {"BatchMismatch"}
    assert all("it returned 2 for 3 inputs" in d.message for d in result.dead_letters)


@pytest.mark.slow
def test_the_cli_exits_4_and_names_the_resume_when_the_provider_is_down(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": n, "text": f"t{n}"}) + "\n" for n in range(30))
    )
    environment = {**os.environ, "PYTHONPATH": str(JOBS), "DOWN_URL": closed_port()}
    job = subprocess.run(
        [
            sys.executable, "-c", "from headrace.cli import main; main()", "run",
            "first_jobs:down_llm", "--input", "in.jsonl", "--key", "id",
            "--output", "out.jsonl", "--run-dir", "state",
        ],
        cwd=tmp_path, env=environment, text=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert job.returncode == 4, job.stderr
    assert "stopped early: " in job.stdout and "looks down" in job.stdout
    assert "finish it with: headrace resume state" in job.stderr


def test_an_outage_is_on_the_progress_line_and_in_the_report_while_it_lasts(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": n, "text": f"t{n}"}) + "\n" for n in range(50))
    )
    env = {**os.environ, "DOWN_URL": closed_port(), "CI": "1", "PYTHONPATH": str(JOBS)}
    files = ["--input", "in.jsonl", "--output", "out.jsonl", "--run-dir", "run"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace",
            "run",
            "first_jobs:long_down_llm",
            "--key",
            "id",
            *files,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 4, done.stderr  # stopped early, resumable
    # the progress line said so while the run waited, not only at the end
    progress = [line for line in done.stderr.splitlines() if line.startswith("headrace: ")]
    outage = [line for line in progress if "provider of step 'complete' down for" in line]
    assert outage, done.stderr
    assert "the run stops if it stays down" in outage[0] and "ClientConnectorError" in outage[0]
    report = subprocess.run(
        [sys.executable, "-m", "headrace", "report", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    html = (tmp_path / report.stdout.strip()).read_text()
    assert 'data-key="outages">outages (a circuit opened): complete' in html
    assert "complete down" in html  # marked on the charts
