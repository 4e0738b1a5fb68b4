"""The gate: one order of policies, one shape for each, one retry loop for steps and clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from headrace.limits.call import Call
from headrace.limits.circuit import Circuit
from headrace.limits.gate import Gate
from headrace.limits.retry import Retrier, Retry
from headrace.metrics import StepMetrics

FAST = Retry(attempts=3, backoff=0.001, max_delay=0.002, budget=None)


class Recording:
    """A policy that writes down what it was told."""

    def __init__(self, name: str, log: list[str], refuse: BaseException | None = None) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    async def enter(self, call: Call) -> None:
        self.log.append(f"enter {self.name}")
        if self.refuse is not None:
            raise self.refuse

    async def leave(self, call: Call, error: BaseException | None) -> None:
        self.log.append(f"leave {self.name} {type(error).__name__ if error else 'ok'}")


def gate(*policies: Any, retry: Retry | None = None, circuit: Any = None) -> Gate:
    return Gate(
        "test",
        policies,
        retrier=Retrier(retry) if retry else None,
        circuit=circuit,
        metrics=StepMetrics(name="test", kind="function"),
    )


def test_policies_enter_in_order_and_leave_innermost_first() -> None:
    log: list[str] = []

    async def fn(call: Call) -> int:
        log.append("call")
        return 7

    passage = gate(Recording("a", log), Recording("b", log))
    assert asyncio.run(passage.call(fn, None)) == 7
    assert log == ["enter a", "enter b", "call", "leave b ok", "leave a ok"]


def test_a_failed_attempt_is_heard_by_every_policy_then_retried() -> None:
    log: list[str] = []
    calls = 0

    async def fn(call: Call) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("refused")
        return calls

    passage = gate(Recording("a", log), retry=FAST)
    assert asyncio.run(passage.call(fn, None)) == 3
    assert log.count("leave a ConnectionError") == 2 and log[-1] == "leave a ok"
    assert passage.metrics.retries == 2


def test_a_refusal_before_the_call_is_not_retried_and_inner_policies_never_enter() -> None:
    log: list[str] = []
    called = False

    async def fn(call: Call) -> None:
        nonlocal called
        called = True

    refused = gate(
        Recording("a", log), Recording("b", log, refuse=ConnectionError("no")), Recording("c", log)
    )
    refused.retrier = Retrier(FAST)
    with pytest.raises(ConnectionError):
        asyncio.run(refused.call(fn, None))
    assert not called
    assert log == ["enter a", "enter b", "leave a ConnectionError"]


def test_a_cancelled_call_is_heard_as_a_cancellation() -> None:
    log: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        async def fn(call: Call) -> None:
            started.set()
            await asyncio.Event().wait()  # never set: only the cancellation ends it

        task = asyncio.create_task(gate(Recording("a", log)).call(fn, None))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == ["enter a", "leave a CancelledError"]


def test_attempts_spent_with_no_answer_from_anyone_go_on_until_the_circuit_opens() -> None:
    """At concurrency 1 the first item of an outage is not a dead letter: nobody was
    answered since it began, so it goes on (with its backoff) until the circuit opens,
    then waits for the probe like every other call."""
    circuit = Circuit(failures=5, reset=0.01).new_state()
    calls = 0

    async def fn(call: Call) -> str:
        nonlocal calls
        calls += 1
        if calls <= 7:  # down for seven calls: more than the item's three attempts
            raise ConnectionError("refused")
        return "up"

    passage = gate(circuit, retry=FAST, circuit=circuit)
    assert asyncio.run(passage.call(fn, None)) == "up"
    assert calls == 8 and circuit.opened >= 1 and circuit.state == "closed"


def test_attempts_spent_after_someone_else_was_answered_end_as_the_items_fault() -> None:
    circuit = Circuit(failures=5, reset=0.01).new_state()
    calls = 0

    async def poison(call: Call) -> None:
        nonlocal calls
        calls += 1
        circuit.succeeded()  # meanwhile another item's call was answered
        raise ConnectionError("refused")

    passage = gate(retry=FAST, circuit=circuit)
    with pytest.raises(ConnectionError) as failure:
        asyncio.run(passage.call(poison, None))
    assert calls == 3 and circuit.opened == 0
    assert failure.value.headrace_attempts == 3  # type: ignore[attr-defined]
    assert "retries stopped: all 3 attempts failed" in str(failure.value.__notes__)


def test_an_error_of_the_items_own_ends_at_once_whatever_the_circuit() -> None:
    circuit = Circuit(failures=5, reset=0.01).new_state()

    async def bad(call: Call) -> None:
        raise ValueError("not retryable")

    with pytest.raises(ValueError):
        asyncio.run(gate(circuit, retry=FAST, circuit=circuit).call(bad, None))
    assert circuit.answers == 1 and circuit.in_a_row == 0


class Nothing:
    """A policy with nothing to do: its gate is no longer a plain one."""

    def enter(self, call: Call) -> None:
        return None

    def leave(self, call: Call, error: BaseException | None) -> None:
        return None


def _counted_gate(*extra: Any) -> Gate:
    from headrace.limits.concurrency import ConcurrencyLimit
    from headrace.limits.gate import Counting, Slots

    metrics = StepMetrics(name="test", kind="function")
    policies = [
        *extra,
        Slots(ConcurrencyLimit(2), None),
        Counting(metrics, metrics.record_call, True),
    ]
    return Gate("test", policies, metrics=metrics)


def test_a_gate_of_a_slot_and_the_counting_alone_is_plain_and_counts_what_the_full_one_does() -> (
    None
):
    from headrace._types import FILTERED
    from headrace.errors import StepFailed, Throttled

    plain, full = _counted_gate(), _counted_gate(Nothing())
    assert plain._plain() is not None and full._plain() is None
    assert _counted_gate()._plain() is not None
    with_retries = Gate("test", plain.policies, retrier=Retrier(FAST), metrics=plain.metrics)
    assert with_retries._plain() is None

    async def fn(value: int) -> Any:
        if value == 1:
            raise Throttled("slow down")
        if value == 2:
            raise SystemExit(3)  # the step's own, not the run's
        return FILTERED if value == 3 else value * 10

    async def through(gate: Gate) -> list[str]:
        handle = gate.handler(fn)
        seen = []
        for value in (0, 1, 2, 3, 4):
            try:
                seen.append(repr(await handle(value)))
            except StepFailed as failure:
                seen.append(f"{failure.step}: {type(failure.cause).__name__}")
        return seen

    assert asyncio.run(through(plain)) == asyncio.run(through(full))
    assert asyncio.run(through(_counted_gate())) == [
        "0", "test: Throttled", "test: StepRaisedControl", repr(FILTERED), "40",
    ]  # fmt: skip
    counted = [(m.calls, m.errors, m.throttled, m.filtered) for m in (plain.metrics, full.metrics)]
    assert counted[0] == counted[1] == (3, 2, 1, 1)
    slots = [gate.policies[-2].limit.statistics() for gate in (plain, full)]  # type: ignore[attr-defined]
    assert [(s.in_use, s.admitted) for s in slots] == [(0, 5), (0, 5)]  # every slot given back
