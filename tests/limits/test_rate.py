"""hr.Rate: the limiter's arithmetic on a fake clock, learning, and runs against headrace sim."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from typing import Any

import aiohttp
import pytest
from services import FakeClock, PrivateRedis, arun_quietly, run_quietly

import headrace as hr
from headrace.limits.bucket import TokenBucket
from headrace.limits.rate import Rate
from headrace.limits.rate_state import RateState
from headrace.limits.usage import estimate_tokens, usage_tokens
from headrace.sim import serve


def test_a_bucket_refuses_or_reserves_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, capacity=5, now=0.0)
    assert all(bucket.try_take(1, 0.0) for _ in range(5))
    assert not bucket.try_take(1, 0.0)
    assert bucket.wait_for(1, 0.0) == pytest.approx(0.1)
    assert bucket.try_take(1, 0.1)
    assert bucket.reserve(3, 0.1) == pytest.approx(0.3)  # into debt: paid off in 0.3 s
    assert bucket.until_full(0.1) == pytest.approx(0.8)
    bucket.adjust(10, 0.1)
    assert bucket.level == 5  # never above the capacity


def test_waiters_are_spread_at_the_rate_not_released_together() -> None:
    clock = FakeClock()
    rate = Rate(requests=600, per="minute", burst=10, headroom=0, _clock=clock)
    waits = [rate.local.reserve_now(1, 0) for _ in range(30)]
    assert waits[:10] == [0.0] * 10  # the burst goes at once
    gaps = [b - a for a, b in itertools.pairwise(waits[10:])]
    assert gaps == pytest.approx([0.1] * 19)  # then one every 1/rate seconds
    clock.now = 1.0  # a second later ten are paid for: the queue moved on by ten
    assert rate.local.reserve_now(1, 0) == pytest.approx(waits[-1] + 0.1 - 1.0)


def test_the_headroom_keeps_part_of_the_burst_unspent() -> None:
    rate = Rate(requests=6000, per="minute", burst=100, _clock=FakeClock())
    waits = [rate.local.reserve_now(1, 0) for _ in range(100)]
    assert sum(1 for w in waits if w == 0) == 95  # 50 ms of 100/s kept back
    small = Rate(requests=600, per="minute", burst=2, headroom="500ms", _clock=FakeClock())
    assert small.local.requests is not None
    assert small.local.requests.capacity == 1.0  # 0.5 s of 10/s is 5: capped at half the burst


def test_tokens_are_estimated_then_reconciled_with_the_usage() -> None:
    clock = FakeClock()
    rate = Rate(tokens=6000, per="minute", token_burst=1000, headroom=0, _clock=clock)
    item = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert estimate_tokens(item) == 3 + 3 + 100

    state = RateState(rate)

    async def call(used: int) -> float:
        permit = await state.acquire(item)
        await state.succeeded(permit, {"usage": {"total_tokens": used}})
        return permit.tokens

    first = asyncio.run(call(126))
    assert first == 106 + 50  # before any usage: the prompt plus max_tokens
    assert rate.local.tokens is not None
    assert rate.local.tokens.level == pytest.approx(1000 - 126)  # the estimate was reconciled
    second = asyncio.run(call(126))
    assert second == pytest.approx(106 + 20)  # then the completion size it has seen


def test_usage_is_read_from_dicts_and_sdk_objects() -> None:
    class Usage:
        total_tokens = 42

    class Reply:
        usage = Usage()

    assert usage_tokens({"usage": {"total_tokens": 7}}) == 7
    assert usage_tokens(Reply()) == 42
    assert usage_tokens("no usage") is None


def test_a_429_empties_the_bucket_or_sets_it_from_the_headers() -> None:
    clock = FakeClock()
    rate = Rate(requests=600, per="minute", burst=10, headroom=0, _clock=clock)
    assert rate.local.requests is not None
    state = RateState(rate)
    asyncio.run(state.throttled_by(None, None))
    assert rate.local.requests.level == 0.0
    clock.now = 10.0  # refilled
    asyncio.run(state.throttled_by(None, {"x-ratelimit-remaining-requests": "3"}))
    assert rate.local.requests.level == 3.0
    assert rate.limit()["requests_per_minute"] == 600  # a known limit is never changed


def test_auto_learns_the_limit_from_headers_and_counts_the_calls_in_flight() -> None:
    rate = Rate.auto()
    permits = [rate.permit({"prompt": "x"}) for _ in range(10)]  # ten calls sent, unlimited
    assert rate.limit()["source"] == "not learned yet"
    headers = {
        "x-ratelimit-limit-requests": "6000",
        "x-ratelimit-remaining-requests": "90",
        "x-ratelimit-reset-requests": "100ms",
    }
    RateState(rate).observe(permits[0], headers)  # the first answer: 90 left when it arrived
    assert rate.limit() == {
        "requests_per_minute": 6000.0,
        "tokens_per_minute": None,
        "source": "headers",
    }
    assert rate.local.requests is not None
    # 90 left at the provider, less the nine calls sent after that one, less the headroom
    assert rate.local.requests.level == pytest.approx(90 - 9 - 5, abs=0.5)


def test_auto_without_headers_converges_near_the_limit_from_429s() -> None:
    """A provider of 100 req/s (burst 100) and a client offering 300/s, in simulated time."""
    clock = FakeClock()
    rate = Rate(_auto=True, _clock=clock)
    provider = TokenBucket(100, 100, 0.0)
    sent = throttled = 0
    learned: list[float] = []
    state = RateState(rate)

    async def simulate() -> None:
        nonlocal sent, throttled
        offer = 0.0
        while offer < 60.0:
            offer += 1 / 300
            clock.now = offer
            permit = rate.permit({})
            send_at = offer + rate.local.reserve_now(1, 0)
            clock.now = send_at
            sent += 1
            if provider.try_take(1, send_at):
                await state.succeeded(permit, None)
            else:
                throttled += 1
                await state.throttled_by(permit, None)
            offer = max(offer, send_at)
            if offer > 30:
                learned.append(rate.limit()["requests_per_minute"] / 60)

    asyncio.run(simulate())
    assert rate.limit()["source"] == "429s"
    assert 85 <= sum(learned) / len(learned) <= 101  # the mean rate over the last 30 s
    assert throttled / sent < 0.03


def test_invalid_rates_are_refused_where_they_are_built() -> None:
    with pytest.raises(hr.PipelineError, match="needs requests"):
        hr.Rate()
    with pytest.raises(hr.PipelineError, match="positive"):
        hr.Rate(requests=0)
    with pytest.raises(hr.PipelineError, match="redis"):
        hr.Rate(requests=10, shared="http://x")
    with pytest.raises(hr.PipelineError, match="batched"):
        hr.step(batch=hr.Batch(max_size=4), rate=hr.Rate(requests=10))(lambda xs: xs)  # type: ignore[call-overload]


def _chat(session: list[aiohttp.ClientSession], url: str, **options: Any) -> Any:
    @hr.step(name="chat", **options)
    async def chat(item: dict[str, Any]) -> dict[str, Any]:
        async with session[0].post(f"{url}/chat/completions", json=item) as response:
            hr.observe(response.headers)
            response.raise_for_status()
            reply: dict[str, Any] = await response.json()
            return reply

    return chat


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {"model": "m", "messages": [{"role": "user", "content": f"item {i}"}]} for i in range(n)
    ]


async def _run(url: str, n: int, **options: Any) -> hr.RunResult:
    session: list[aiohttp.ClientSession] = []
    async with aiohttp.ClientSession() as client:
        session.append(client)
        return await arun_quietly(_chat(session, url, **options), _items(n))


class LoopStalls:
    """The stalls of the running event loop: how late a 10 ms tick woke, each time it
    was more than 50 ms late (a loaded machine's scheduler, never the code under test)."""

    def __init__(self) -> None:
        self.stalls: list[float] = []

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.01)
            late = loop.time() - asked - 0.01
            if late > 0.05:
                self.stalls.append(late)

    def herd(self, per_s: float, headroom: int) -> int:
        """429s a stall can explain: the calls that fell due while the loop stood still
        leave together when it goes on, and the provider's bucket holds ``headroom``."""
        return sum(max(0, math.ceil(late * per_s) - headroom) for late in self.stalls)


async def _watched(stalls: LoopStalls, *runs: tuple[str, int, dict[str, Any]]) -> list[Any]:
    """Runs, one after the other in one event loop, while ``stalls`` watches it."""
    watch = asyncio.create_task(stalls.watch())
    try:
        return [await _run(url, n, **options) for url, n, options in runs]
    finally:
        watch.cancel()


def test_a_known_limit_draws_no_429_and_spreads_the_calls() -> None:
    # the provider allows twice our limit and twice our burst: the spread is what is
    # tested (the bucket's own spacing is tested on a fake clock above), and the
    # provider's headroom absorbs a loaded machine's stall of up to ~0.25 s, on our
    # side or the simulator's, after which the calls due meanwhile leave together
    with serve(rpm=2400, burst=10, process=True) as sim:
        rate = hr.Rate(requests=1200, per="minute", burst=5)
        retry = hr.Retry(attempts=5, backoff=0.05)
        options = {"rate": rate, "concurrency": 40, "retry": retry}
        stalls = LoopStalls()
        [result] = asyncio.run(_watched(stalls, (sim.url, 40, options)))
        stats = sim.stats()
    assert result.metrics.items_out == 40
    # never a herd: 40 at once would have drawn 30 429s from the provider's bucket of 10
    assert stats["throttled"] <= 3 + stalls.herd(20, 5), stalls.stalls
    chat = result.metrics.step("chat")
    assert chat.rate_waits >= 30
    assert "rate 1,200 req/min (given)" in result.summary()


def test_after_429s_from_someone_else_on_the_key_waiters_do_not_herd() -> None:
    with serve(rpm=1200, burst=5, process=True) as sim:
        rate = hr.Rate(requests=1200, per="minute", burst=5)
        ours = {"rate": rate, "retry": hr.Retry(attempts=10), "concurrency": 30}
        stalls = LoopStalls()
        # another client empties the provider's bucket, and our run starts at once after
        other, result = asyncio.run(_watched(stalls, (sim.url, 5, {}), (sim.url, 30, ours)))
        stats = sim.stats()
    assert other.metrics.items_out == 5 and result.metrics.items_out == 30
    chat = result.metrics.step("chat")
    # only our burst finds the bucket the other client emptied; the 30 waiters behind
    # it do not come back at once (that would draw up to 30 429s), they keep 20/s; a
    # stall of the loaded machine's event loop sends the calls due meanwhile together
    assert 1 <= chat.throttled <= 8 + stalls.herd(20, 0), (stalls.stalls, stats["windows"])


def test_auto_learns_the_sims_limit_from_its_headers() -> None:
    with serve(rpm=3000, burst=10, process=True) as sim:
        rate = hr.Rate.auto()
        result = asyncio.run(_run(sim.url, 60, rate=rate, retry=hr.Retry(attempts=10)))
        stats = sim.stats()
    assert result.metrics.items_out == 60
    assert rate.limit()["requests_per_minute"] == 3000
    # Only the calls sent before the first answer, or in flight while a loaded machine
    # stretches the transit past the headroom, can find the provider's bucket empty:
    # a handful (16 seen once with the whole suite loading both cores), where a run at
    # full concurrency draws one 429 per call past the burst (50 here).
    assert stats["throttled"] <= 20
    assert result.metrics.step("chat").to_dict()["rate"]["source"] == "headers"


def _two_processes(sim_url: str, shared: str, key: str) -> list[dict[str, Any]]:
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    worker = Path(__file__).with_name("rate_worker.py")
    start_at = f"{time.time() + 2.0}"
    children = [
        subprocess.Popen(
            [sys.executable, str(worker), sim_url, shared, key, "30", start_at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    return [json.loads(output) for output in outputs]


@pytest.mark.slow
def test_a_redis_limit_is_shared_by_two_processes(redis_url: str) -> None:
    import uuid

    with serve(rpm=1200, burst=5, process=True) as sim:
        # the control: two processes each keeping the limit alone send twice the rate
        alone = _two_processes(sim.url, "local", "unused")
        throttled_alone = sim.stats()["throttled"]
        sim.reset()
        shared = _two_processes(sim.url, redis_url, f"test-{uuid.uuid4().hex[:8]}")
        stats = sim.stats()
    assert [r["out"] for r in alone + shared] == [30] * 4
    assert throttled_alone >= 15
    # together they kept one limit of 20/s: at most the burst finds the bucket empty
    # (how the calls spread in time is the token bucket's, tested without a clock in
    # tests/limits, and measured by bench/rate_known.py)
    assert stats["throttled"] <= 3


def test_a_redis_outage_behind_a_shared_rate_pauses_nothing_and_kills_nothing(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis goes away for a stretch of the run (it used to turn 1,229 of 1,500 items into
    dead letters): items are paced locally at the outage share meanwhile, none fails,
    one warning says so, another says Redis is back, and the summary counts it."""
    calls: list[int] = []
    rate = hr.Rate(requests=60_000, per="minute", shared=private_redis.url, key=uuid.uuid4().hex)

    @hr.step(rate=rate, retry=hr.Retry(attempts=1), concurrency=8, name="paced")
    async def paced(x: int) -> int:
        calls.append(x)
        if len(calls) == 40:
            private_redis.stop()  # Redis goes away mid-run ...
        if len(calls) == 100:
            private_redis.start()  # ... and comes back
            private_redis.wait_until_up()
        # after the comeback the run lasts past the second after which Redis is tried again
        await asyncio.sleep(0.002 if len(calls) < 100 else 0.05)
        return x

    caplog.set_level(logging.WARNING, logger="headrace.rate")
    result = run_quietly(paced, range(300))
    assert result.items_out == 300 and result.items_dead == 0
    assert sorted(calls) == list(range(300))  # each called once: no attempt was spent on it
    assert "is not answering" in caplog.text and "answers again" in caplog.text
    assert sum("is not answering" in r.getMessage() for r in caplog.records) == 1
    assert "Redis down 1 time(s), paced locally at 25% meanwhile" in result.summary()


def test_each_run_has_its_own_state_of_a_rate_and_its_counts() -> None:
    """What a run did with a limit (its 429s, its connection) is the run's; what is
    known of the provider (the limit) stays with the Rate."""
    rate = Rate(requests=6000, per="minute")
    calls = 0

    @hr.step(rate=rate, retry=hr.Retry(attempts=3, backoff=0.001, budget=None))
    async def once_throttled(x: int) -> int:
        nonlocal calls
        calls += 1
        if x == 0 and calls % 2:  # the first call of each run is answered 429
            raise hr.Throttled("slow down")
        return x

    states = []
    for _ in range(2):
        calls = 0
        result = run_quietly(once_throttled, range(1))
        state = result.metrics.step("once_throttled").rate
        assert result.ok and state is not None and state.settings is rate
        assert state.throttled == 1  # this run's 429, not the runs' before it
        states.append(state)
    assert states[0] is not states[1]
    assert states[1].limit()["requests_per_minute"] == 6000
