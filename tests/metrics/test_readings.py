"""The metrics read live parts only through frozen snapshots (``statistics()``)."""

from __future__ import annotations

import dataclasses

import pytest
from services import FakeClock

import headrace as hr
from headrace.limits.circuit import Circuit
from headrace.limits.concurrency import ConcurrencyLimit
from headrace.limits.rate import Rate
from headrace.limits.rate_state import RateState
from headrace.metrics import StepMetrics


def test_a_circuits_reading_is_frozen_at_the_moment_it_was_taken() -> None:
    clock = FakeClock()
    state = Circuit(failures=1, reset=60, _clock=clock).new_state()
    before = state.statistics()
    state.failed(ConnectionError("refused"))
    clock.now += 5
    after = state.statistics()
    assert (before.state, before.opened, before.down_s) == ("closed", 0, 0.0)
    assert (after.state, after.opened, after.down_s) == ("open", 1, 5.0)
    assert after.last_error == "ConnectionError: refused"
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.state = "closed"  # type: ignore[misc]


def test_a_steps_summary_shows_the_snapshots_of_its_slots_rate_and_circuit() -> None:
    clock = FakeClock()
    circuit = Circuit(failures=1, reset=60, _clock=clock).new_state()
    limiter = ConcurrencyLimit(4)
    metrics = StepMetrics(name="api", kind="function", slots=4)
    metrics.limiter = limiter
    metrics.rate = RateState(Rate(requests=600, per="minute", _clock=clock))
    metrics.circuit = circuit
    assert limiter.try_acquire()
    circuit.failed(TimeoutError("slow"))
    clock.now += 2
    data = metrics.to_dict()
    assert data["concurrency"] == {"limit": 4, "peak": 1, "in_use": 1, "waiting": 0}
    assert data["rate"] == {
        "requests_per_minute": 600,
        "tokens_per_minute": None,
        "source": "given",
        "waits": 0,
        "wait_s": 0.0,
    }
    assert data["circuit"]["state"] == "open" and data["circuit"]["down_s"] == 2.0
    assert hr.ConcurrencyStatistics is type(limiter.statistics())


def test_a_detached_copy_holds_counters_and_no_live_part() -> None:
    metrics = StepMetrics(name="api", kind="function", calls=3)
    metrics.limiter = ConcurrencyLimit(2)
    metrics.circuit = Circuit().new_state()
    copy = metrics.detached()
    assert copy.calls == 3 and copy.limiter is None and copy.circuit is None
