"""hr.AdaptiveConcurrency: a limit that moves, its controller's rules, and a run against a cap."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from services import arun_quietly

import headrace as hr
from headrace.limits.concurrency import ConcurrencyController, ConcurrencyLimit
from headrace.sim import serve


def test_a_lowered_limit_takes_effect_as_holders_release_and_a_raised_one_at_once() -> None:
    async def main() -> None:
        limit = ConcurrencyLimit(4)
        for _ in range(4):
            assert limit.try_acquire()
        limit.set_limit(2)
        limit.release()
        limit.release()  # two released: both slots are gone, not handed on
        assert not limit.try_acquire()
        limit.release()
        assert limit.try_acquire()  # now 2 held of 2
        assert not limit.try_acquire()
        waiter = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        limit.set_limit(3)  # raised: the waiter gets the new slot at once
        await asyncio.sleep(0)
        assert waiter.done()
        assert limit.statistics().in_use == 3

    asyncio.run(main())


def test_the_controller_doubles_then_adds_and_cuts_on_queueing_and_429s() -> None:
    limit = ConcurrencyLimit(4)
    controller = ConcurrencyController(hr.AdaptiveConcurrency(initial=4, max=100), limit)

    def round_of(latency: float) -> int:
        for _ in range(limit.limit):
            controller.finished_call(latency)
        return limit.limit

    assert [round_of(0.1) for _ in range(3)] == [8, 16, 32]  # slow start
    controller.throttled()
    assert limit.limit == 24  # a 429: cut by a quarter, and slow start is over
    round_of(0.1)  # the round of the 429 moves nothing more
    assert [round_of(0.1) for _ in range(2)] == [25, 26]  # then one more per round
    for _ in range(30):  # latency climbs well past twice the best seen: queueing
        controller.finished_call(0.5)
    assert limit.limit < 26


def test_it_is_refused_where_it_cannot_work() -> None:
    with pytest.raises(hr.PipelineError, match="initial <= max"):
        hr.AdaptiveConcurrency(initial=10, max=5)
    with pytest.raises(hr.PipelineError, match="process executor"):
        hr.step(executor="process", concurrency=hr.AdaptiveConcurrency())(abs)


def test_it_settles_under_a_providers_concurrency_cap() -> None:
    async def main(url: str) -> hr.RunResult:
        async with aiohttp.ClientSession() as session:

            @hr.step(
                name="chat",
                concurrency=hr.AdaptiveConcurrency(initial=4, max=64),
                retry=hr.Retry(attempts=20, backoff=0.05),
            )
            async def chat(i: int) -> Any:
                body = {"model": "m", "messages": [{"role": "user", "content": f"{i}"}]}
                async with session.post(f"{url}/chat/completions", json=body) as response:
                    response.raise_for_status()
                    return await response.json()

            return await arun_quietly(chat, range(400))

    with serve(concurrency=16, latency_ms=50, process=True) as sim:
        result = asyncio.run(main(sim.url))
        stats = sim.stats()
    assert result.metrics.items_out == 400
    step = result.metrics.step("chat")
    assert step.limiter is not None
    assert step.limiter.statistics().limit < 64  # it came down from where 429s began (the band is
    # checked without a clock below: here the machine's load moves the latencies)
    assert stats["throttled"] / stats["requests"] < 0.1


def test_driven_by_a_provider_capped_at_16_it_settles_near_the_cap() -> None:
    """No clock: each round sends the limit's worth of calls; the provider answers 16
    of them in 50 ms and refuses the rest with a 429, as the sim's concurrency cap does."""
    limit = ConcurrencyLimit(4)
    controller = ConcurrencyController(hr.AdaptiveConcurrency(initial=4, max=64), limit)
    seen = []
    for _ in range(60):
        sent = limit.limit
        for call in range(sent):
            if call < 16:
                controller.finished_call(0.05)
            else:
                controller.throttled()
        seen.append(limit.limit)
    assert max(seen) <= 32  # slow start overshoots once, then is cut back
    assert all(8 <= n <= 20 for n in seen[-40:]), seen  # near the cap, not at the 64 allowed
