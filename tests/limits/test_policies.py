"""hr.Circuit, hr.Fallback and hr.Timeout: their states and what they do to a run."""

from __future__ import annotations

import asyncio

import pytest
from services import FakeClock, run_quietly

import headrace as hr
from headrace.limits.circuit import Circuit


class Down(ConnectionError):
    """The provider is unreachable."""


def test_the_circuit_opens_after_failures_in_a_row_and_probes_back() -> None:
    clock = FakeClock()
    circuit = Circuit(failures=3, reset=10, when_open="fail", _clock=clock).new_state()
    for _ in range(2):
        assert circuit.allow()
        circuit.failed(Down())
    assert circuit.allow()
    circuit.succeeded()  # a success breaks the run of failures
    for _ in range(3):
        assert circuit.allow()
        circuit.failed(Down())
    assert circuit.state == "open"
    assert not circuit.allow()  # fails fast...
    clock.now = 9.9
    assert not circuit.allow()
    clock.now = 10.0  # ...until the reset time, when one probe goes
    assert circuit.allow()
    assert circuit.state == "half-open"
    assert not circuit.allow()  # only one
    circuit.failed(Down())  # the probe failed: open again for another reset
    assert circuit.state == "open"
    assert not circuit.allow()
    clock.now = 20.0
    assert circuit.allow()
    circuit.succeeded()
    assert circuit.state == "closed"
    assert circuit.allow()
    assert (circuit.opened, circuit.refused) == (2, 4)


def test_429s_and_bad_requests_do_not_open_the_circuit() -> None:
    circuit = Circuit(failures=2).new_state()
    for error in (hr.Throttled(), ValueError("bad input"), hr.Throttled(), ValueError("x")):
        circuit.failed(error)
    assert circuit.state == "closed"


def test_an_open_circuit_fails_items_fast_without_calling() -> None:
    calls = 0

    @hr.step(concurrency=1, circuit=hr.Circuit(failures=3, reset=60, when_open="fail"))
    async def down(x: int) -> int:
        nonlocal calls
        calls += 1
        raise Down("refused")

    result = hr.run(down, range(20))
    assert calls == 3
    assert result.metrics.items_dead == 20
    kinds = [d.error_type for d in result.dead_letters]
    assert kinds.count("Down") == 3 and kinds.count("CircuitOpen") == 17
    assert "circuit open: opened 1 times, refused 17 calls" in result.summary()


def test_a_fallback_step_takes_over_when_attempts_are_spent() -> None:
    @hr.step
    async def backup(x: int) -> str:
        return f"backup {x}"

    @hr.step(retry=hr.Retry(attempts=2, backoff=0), fallback=backup)
    async def primary(x: int) -> str:
        if x % 2:
            raise Down("primary is down")
        return f"primary {x}"

    result = hr.run(primary, range(4))
    assert sorted(result.outputs) == ["backup 1", "backup 3", "primary 0", "primary 2"]
    metrics = result.metrics.step("primary")
    assert (metrics.retries, metrics.fallbacks) == (2, 2)
    assert result.metrics.step("backup").items == 2


def test_a_fallback_can_be_limited_and_its_own_failure_is_the_dead_letter() -> None:
    @hr.step
    async def backup(x: int) -> int:
        raise RuntimeError("backup failed too")

    @hr.step(fallback=hr.Fallback(backup, when=lambda e: isinstance(e, Down)))
    async def primary(x: int) -> int:
        raise Down("down") if x == 0 else ValueError("bad item")

    result = hr.run(primary, [0, 1])
    by_index = {d.index: d for d in result.dead_letters}
    assert by_index[0].step == "backup"
    assert by_index[0].error_type == "RuntimeError"
    assert by_index[1].step == "primary"  # not a Down: no fallback
    assert by_index[1].error_type == "ValueError"


def test_a_total_timeout_bounds_an_item_across_its_retries() -> None:
    attempts = 0

    @hr.step(
        timeout=hr.Timeout(attempt=0.05, total=0.3),
        retry=hr.Retry(attempts=100, backoff=0.01, budget=None),
    )
    async def hangs(x: int) -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(10)
        return x

    result = hr.run(hangs, [1])
    (dead,) = result.dead_letters
    assert dead.error_type == "StepTimeout"
    assert "0.3s" in dead.message
    assert 2 <= attempts < 100


def test_invalid_policies_are_refused_where_the_step_is_defined() -> None:
    async def f(x: int) -> int:
        return x

    with pytest.raises(hr.PipelineError, match="attempt=, total="):
        hr.Timeout()
    with pytest.raises(hr.PipelineError, match="circuit must be"):
        hr.step(f, circuit=5)  # type: ignore[call-overload]
    with pytest.raises(hr.PipelineError, match="fallback must be"):
        hr.step(f, fallback=f)  # type: ignore[call-overload]
    with pytest.raises(hr.PipelineError, match="Fallback takes a step"):
        hr.Fallback(f)  # type: ignore[arg-type]
    with pytest.raises(hr.PipelineError, match="positive integer"):
        hr.Circuit(failures=0)


def test_each_run_starts_with_a_closed_circuit_and_its_steps_share_one() -> None:
    circuit = hr.Circuit(failures=2, reset=60, when_open="fail")
    calls = 0

    @hr.step(concurrency=1, circuit=circuit)
    async def down(x: int) -> int:
        nonlocal calls
        calls += 1
        raise Down("refused")

    @hr.step(concurrency=1, circuit=circuit, name="also_down")
    async def also(x: int) -> int:
        nonlocal calls
        calls += 1
        raise Down("refused")

    first = run_quietly(down | also, range(5))
    # one state for both steps: two failures in all opened it for both
    assert (
        calls == 2 and first.metrics.step("down").circuit is first.metrics.step("also_down").circuit
    )
    run_quietly(down, range(5))
    assert calls == 4  # the next run started closed: the settings carry no state
