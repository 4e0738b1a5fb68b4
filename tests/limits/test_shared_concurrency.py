"""AdaptiveConcurrency(shared=...): one concurrency limit for every process of a run,
moved by all of them in Redis, each process holding its share."""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
import uuid
from typing import Any

import pytest
import redis
from services import arun_quietly, run_quietly

import headrace as hr
from headrace.limits.concurrency import ConcurrencyLimit
from headrace.limits.shared_concurrency import EXPIRY_S, SharedConcurrencyController


def _group(url: str, count: int, **settings: Any) -> list[SharedConcurrencyController]:
    """``count`` controllers of one shared limit, as ``count`` processes hold it."""
    policy = hr.AdaptiveConcurrency(shared=url, **settings)
    key = uuid.uuid4().hex
    return [
        SharedConcurrencyController(pickle.loads(pickle.dumps(policy)), ConcurrencyLimit(4), key)
        for _ in range(count)
    ]


async def _settled(*controllers: SharedConcurrencyController) -> None:
    """Wait until every report on its way has been answered."""
    for controller in controllers:
        while controller.sending is not None and not controller.sending.done():
            await controller.sending


async def _rebalanced(*controllers: SharedConcurrencyController) -> None:
    """Each reports twice, in turn: every share is then the limit's fair part."""
    for _ in range(2):
        for controller in controllers:
            await controller._report("none")


async def _round(controller: SharedConcurrencyController, latency: float = 0.1) -> None:
    for _ in range(controller.limit.limit):
        controller.finished_call(latency)
    await _settled(controller)


def test_processes_hold_shares_of_one_limit_moved_by_all_of_them(redis_url: str) -> None:
    async def scenario() -> None:
        one, two = _group(redis_url, 2, initial=8, max=100)
        assert one.limit.limit == 1  # one slot until Redis answers
        await _settled(one, two)
        # the first to say hello took all 8; the second got what was left: one slot
        assert sorted([one.limit.limit, two.limit.limit]) == [1, 8]
        await _rebalanced(one, two)  # each reports again: half each
        assert (one.group_limit, one.group_size, one.limit.limit, two.limit.limit) == (8, 2, 4, 4)
        await _round(one)
        await _round(two)  # slow start: each round is half the group's, 8 * 2**(1/2) twice
        assert two.group_limit is not None and math.isclose(two.group_limit, 16)
        await _round(one)
        assert one.limit.limit == int(16 * 2**0.5 / 2)
        one.throttled()  # a 429: the group's limit is cut by 0.75 ** (1/2), slow start ends
        await _settled(one)
        assert one.group_limit is not None and math.isclose(
            one.group_limit, 16 * 2**0.5 * 0.75**0.5
        )
        before = one.group_limit
        two.throttled()
        await _settled(two)
        assert two.group_limit is not None and math.isclose(two.group_limit, before * 0.75**0.5)
        after_cuts = two.group_limit
        for _ in range(two.limit.limit):  # the round of the 429 moves nothing more
            two.finished_call(0.1)
        await _settled(two)
        await _round(two)  # then a healthy round adds 1/2 (one of two processes)
        assert math.isclose(two.group_limit, after_cuts + 0.5)
        for controller in (one, two):
            await controller.close()

    asyncio.run(scenario())


def test_a_round_of_calls_slower_than_the_groups_best_cuts_the_limit(redis_url: str) -> None:
    async def scenario() -> None:
        fast, slow = _group(redis_url, 2, initial=8, tolerance=2.0)
        await _settled(fast, slow)
        await _round(fast, latency=0.05)  # the group's best: 50 ms
        grown = fast.group_limit
        assert grown is not None and grown > 8
        await _round(slow, latency=0.5)  # ten times the best: queueing
        assert slow.group_limit is not None and math.isclose(slow.group_limit, grown * 0.9**0.5)
        for controller in (fast, slow):
            await controller.close()

    asyncio.run(scenario())


def test_a_process_that_leaves_or_goes_silent_gives_its_share_back(redis_url: str) -> None:
    async def scenario() -> None:
        one, two, three = _group(redis_url, 3, initial=12, max=12)
        await _settled(one, two, three)
        await _rebalanced(one, two, three)
        assert (one.group_size, one.limit.limit) == (3, 4)
        await three.close()
        await _rebalanced(one, two)
        assert (one.group_size, one.limit.limit) == (2, 6)
        client = redis.Redis.from_url(redis_url)
        try:  # two's last report is older than EXPIRY_S: it no longer counts
            members = one.keys[1]
            client.zadd(members, {two.member: time.time() - EXPIRY_S - 5})
        finally:
            client.close()
        await one._report("none")
        assert (one.group_size, one.limit.limit) == (1, 12)
        for controller in (one, two):
            await controller.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("tampered", ["garbage", "nan", "1e308", "-5"])
def test_a_tampered_limit_in_redis_is_replaced_by_the_initial_one(
    redis_url: str, tampered: str
) -> None:
    async def scenario() -> None:
        (one,) = _group(redis_url, 1, initial=6, max=50)
        await _settled(one)
        client = redis.Redis.from_url(redis_url)
        try:
            client.hset(one.keys[0], mapping={"limit": tampered, "best": tampered})
        finally:
            client.close()
        await one._report("none")
        assert (one.group_limit, one.limit.limit) == (6, 6)
        await one.close()

    asyncio.run(scenario())


def test_while_redis_is_down_a_process_keeps_its_share_and_only_cuts_it(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        (one,) = _group(private_redis.url, 1, initial=8, max=100)
        await _settled(one)
        assert one.limit.limit == 8
        private_redis.stop()
        with caplog.at_level(logging.WARNING, logger="headrace.run"):
            await _round(one)  # healthy: alone, it does not grow
            assert one.limit.limit == 8
            one.throttled()
            await _settled(one)
            assert one.limit.limit == 6  # a 429 still cuts, by a quarter
            await _round(one)
        assert [r.message for r in caplog.records].count(
            caplog.records[0].message
        ) == 1 and "not answering" in caplog.records[0].message
        assert one.outages == 1
        private_redis.start()
        private_redis.wait_until_up()
        await one._report("none")
        assert not one.down and one.group_limit is not None
        await one.close()

    asyncio.run(scenario())


def test_a_run_with_a_shared_limit_ends_and_leaves_the_group(redis_url: str) -> None:
    key = uuid.uuid4().hex
    in_flight, peak = 0, 0

    @hr.step(concurrency=hr.AdaptiveConcurrency(initial=2, max=6, shared=redis_url, key=key))
    async def call(item: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        return item

    result = run_quietly(call, range(300))
    assert sorted(result.outputs) == list(range(300))
    assert peak <= 6  # the group's max: the share never passed it
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.zcard(f"headrace:concurrency:{key}:members") == 0
        # what the run learned stays for the group's next member, within its bounds
        # (whether it went up or down from 2 depends on the machine's load: latency
        # rising under a busy machine lowers it)
        learned = client.hget(f"headrace:concurrency:{key}", "limit")
        assert learned is not None and 1 <= float(learned) <= 6
    finally:
        client.close()


def test_four_runs_sharing_one_limit_hold_no_more_than_it_in_flight(redis_url: str) -> None:
    """Four runs in one process stand for four workers: together they stay at or under
    the group's maximum (and one slot each that the others' shares leave none for:
    a process always holds one), where four unshared limits would each reach it."""

    def peak_of(shared: str | None) -> int:
        in_flight, peak = 0, 0

        async def call(item: int) -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.003)
            in_flight -= 1
            return item

        policy = hr.AdaptiveConcurrency(initial=8, max=8, shared=shared, key=uuid.uuid4().hex)

        async def four() -> None:
            steps = [hr.step(call, concurrency=policy, name=f"call{n}") for n in range(4)]
            runs = [arun_quietly(step, range(200)) for step in steps]
            await asyncio.gather(*runs)

        asyncio.run(four())
        return peak

    assert peak_of(redis_url) <= 8 + 3
    assert peak_of(None) > 8 + 3


@pytest.mark.parametrize("score", [math.inf, 1e18])
def test_a_ghost_member_that_never_expires_is_dropped(redis_url: str, score: float) -> None:
    """A member with a last report in the future (its key's TTL does not matter) and a
    huge share used to starve the group to one slot for as long as it stayed."""

    async def scenario() -> None:
        (one,) = _group(redis_url, 1, initial=12, max=12)
        await _settled(one)
        client = redis.Redis.from_url(redis_url)
        try:
            client.zadd(one.keys[1], {"ghost": score})
            client.hset(one.keys[2], mapping={"ghost": 12})
            client.persist(one.keys[1])
        finally:
            client.close()
        await _rebalanced(one)
        assert (one.group_size, one.limit.limit) == (1, 12)
        await one.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("share", ["inf", "nan", "1e300", "-1e300", "abc"])
def test_a_tampered_share_of_a_live_member_is_not_held(redis_url: str, share: str) -> None:
    async def scenario() -> None:
        one, two = _group(redis_url, 2, initial=12, max=12)
        await _settled(one, two)
        client = redis.Redis.from_url(redis_url)
        try:
            client.hset(one.keys[2], mapping={two.member: share})
        finally:
            client.close()
        await one._report("none")
        assert one.limit.limit == 6  # its fair part: the tampered share is not held
        for controller in (one, two):
            await controller.close()

    asyncio.run(scenario())
