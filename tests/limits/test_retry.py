"""Retries: which failures, how long to wait (no sleeping: the arithmetic), and the budget."""

from __future__ import annotations

import random
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.limits.retry import RetryBudget, is_retryable, retry_after_s


class HttpError(Exception):
    """Shaped like the exceptions of httpx / the openai SDK: a response with status and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": headers or {}})()


class ReadTimeout(Exception):
    """Named like httpx's."""


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (hr.Throttled(), True),
        (HttpError(429), True),
        (HttpError(503), True),
        (HttpError(400), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ReadTimeout(), True),
        (ValueError("bad input"), False),
        (hr.OutputTypeError("wrong type"), False),
    ],
)
def test_what_is_retried_by_default(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_retry_after_comes_from_the_exception_or_its_headers() -> None:
    assert retry_after_s(hr.Throttled(retry_after=2.5)) == 2.5
    assert retry_after_s(HttpError(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(HttpError(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_s(HttpError(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    assert retry_after_s(ValueError()) is None


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = hr.Retry(attempts=10, backoff="100ms", max_delay=1)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        draws = [policy.delay(attempt, ValueError(), rng) for _ in range(2000)]
        assert min(draws) >= 0 and max(draws) <= cap
        assert max(draws) > 0.9 * cap and min(draws) < 0.1 * cap  # spread over the whole range


def test_retry_after_is_a_floor_and_waiters_are_spread_after_it() -> None:
    policy = hr.Retry(attempts=5, backoff=0.5)
    rng = random.Random(3)
    throttled = hr.Throttled(retry_after=2.0)
    delays = sorted(policy.delay(1, throttled, rng) for _ in range(100))
    assert delays[0] >= 2.0 and delays[-1] <= 2.5
    # 100 waiters released by one 429 do not come back together: per 100 ms, at most ~30
    buckets = [0] * 5
    for delay in delays:
        buckets[min(int((delay - 2.0) / 0.1), 4)] += 1
    assert max(buckets) <= 35


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(hr.PipelineError, match="attempts must be a positive integer"):
        hr.Retry(attempts=0)
    with pytest.raises(hr.PipelineError, match="is not a duration"):
        hr.Retry(backoff="soon")
    with pytest.raises(hr.PipelineError, match="batched steps"):

        @hr.step(batch=hr.Batch(8), retry=hr.Retry())  # type: ignore[call-overload]
        def batched(xs: list[int]) -> list[int]:
            return xs


def flaky(failures: int, error: BaseException) -> tuple[Any, dict[int, int]]:
    calls: dict[int, int] = {}

    async def call(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if calls[x] <= failures:
            raise error
        return x

    return call, calls


FAST = {"backoff": 0.001, "max_delay": 0.002}


def test_a_throttled_call_is_retried_until_it_succeeds() -> None:
    call, calls = flaky(2, hr.Throttled(retry_after=0))
    step = hr.step(call, retry=hr.Retry(attempts=3, **FAST))
    result = run_quietly(step, range(10))
    assert sorted(result.outputs) == list(range(10))
    assert set(calls.values()) == {3}
    metrics = result.metrics.step("call")
    assert (metrics.retries, metrics.throttled, metrics.errors) == (20, 20, 20)
    assert "retries 20; 429s 20" in result.summary()


def test_a_call_that_keeps_failing_is_a_dead_letter_with_its_attempts() -> None:
    call, calls = flaky(99, HttpError(503))
    result = run_quietly(hr.step(call, retry=hr.Retry(attempts=4, **FAST)), range(3))
    assert [d.attempts for d in result.dead_letters] == [4, 4, 4]
    assert set(calls.values()) == {4}


def test_an_error_that_is_not_retryable_is_not_retried() -> None:
    call, calls = flaky(99, ValueError("bad input"))
    result = run_quietly(hr.step(call, retry=hr.Retry(attempts=4, **FAST)), range(3))
    assert [d.attempts for d in result.dead_letters] == [1, 1, 1]
    assert set(calls.values()) == {1}


def test_a_custom_predicate_decides_what_is_retried() -> None:
    call, calls = flaky(1, ValueError("flaky parse"))
    policy = hr.Retry(attempts=2, retry_on=lambda e: "flaky" in str(e), **FAST)
    result = run_quietly(hr.step(call, retry=policy), range(5))
    assert result.items_out == 5 and set(calls.values()) == {2}


def test_the_retry_budget_slows_retries_but_never_kills_a_recoverable_item() -> None:
    """30% of items fail twice with a 503 before they succeed: 240 retries, far beyond
    the 10 + 0.2 x 400 the budget earns. The budget used to fail 76 of 400 such items;
    now each retry beyond it waits for it, and every item comes out."""
    calls: dict[int, int] = {}

    async def call(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if x % 10 < 3 and calls[x] <= 2:
            raise HttpError(503)
        return x

    policy = hr.Retry(attempts=4, budget=0.2, budget_refill=200, **FAST)
    result = run_quietly(hr.step(call, retry=policy), range(400))
    assert result.items_out == 400 and result.items_dead == 0
    metrics = result.metrics.step("call")
    assert metrics.retries == 240
    # retries beyond what the budget held at their moment waited (the exact accounting
    # is tested with a fake clock below)
    assert 0 < metrics.retries_delayed <= 240


def test_a_retry_beyond_the_budget_waits_its_share_of_the_refill() -> None:
    now = [0.0]
    budget = RetryBudget(0.5, refill_per_s=2.0, reserve=1, clock=lambda: now[0])
    assert budget.take() == 0.0  # the reserve
    budget.earn()  # +0.5
    assert budget.take() == 0.25  # 0.5 short, paid by the refill at 2 a second
    assert budget.take() == 0.75  # 1.5 in debt now
    now[0] = 10.0  # time passes: the refill pays the debt back, up to the reserve
    assert budget.take() == 0.0
    assert (budget.spent, budget.delayed) == (4, 2)


def test_a_dead_provider_uses_every_attempt_and_the_retries_are_paced() -> None:
    call, calls = flaky(10**6, HttpError(503))
    policy = hr.Retry(attempts=3, budget=0.1, budget_refill=200, **FAST)
    result = run_quietly(hr.step(call, retry=policy), range(50))
    assert result.items_dead == 50 and set(calls.values()) == {3}
    assert [d.attempts for d in result.dead_letters] == [3] * 50
    metrics = result.metrics.step("call")
    assert metrics.retries == 100 and 0 < metrics.retries_delayed <= 100


def test_a_sync_step_on_threads_retries_too() -> None:
    calls: dict[int, int] = {}

    def call(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if calls[x] == 1:
            raise ConnectionResetError("reset by peer")
        return x

    step = hr.step(call, executor="thread", retry=hr.Retry(attempts=2, **FAST))
    assert run_quietly(step, range(8)).items_out == 8
