"""A shared rate's buckets in Redis are untrusted: a tampered level or time never
refills a bucket, never makes a call sleep for ever, and a Redis that restarted empty
during an outage does not hand out a fresh burst on top of what was paced meanwhile.

The script answers how long to wait without sleeping, so these count waits: no clock.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from headrace.limits.pacing import MAX_DEBT_S, RedisBuckets, bounded_wait

RATE, CAP = 10.0, 10.0  # 10 requests a second, a burst of 10


def _buckets(url: str) -> RedisBuckets:
    return RedisBuckets(url, uuid.uuid4().hex, (RATE, CAP, 0.0, 0.0))


async def _waits(buckets: RedisBuckets, calls: int) -> list[float]:
    return [await buckets.reserve(1, 0) for _ in range(calls)]


@pytest.mark.parametrize(
    ("level", "at"),
    [
        ("-inf", None),
        ("-1e300", None),
        ("nan", None),
        ("inf", None),
        ("abc", None),
        ("1e300", None),
        (None, "1e18"),  # a time in the future
        (None, "nan"),
    ],
)
def test_a_tampered_bucket_is_an_empty_one(
    redis_url: str, level: str | None, at: str | None
) -> None:
    async def scenario() -> None:
        buckets = _buckets(redis_url)
        await _waits(buckets, int(CAP))  # the burst is spent: the bucket is empty
        client = redis.Redis.from_url(redis_url)
        try:
            seconds, micro = client.time()
            fields = {"level": level or "0", "at": at or repr(seconds + micro / 1e6)}
            client.hset(buckets.keys[0], mapping=fields)
        finally:
            client.close()
        waits = await _waits(buckets, 20)
        await buckets.close()
        assert all(0 <= w <= MAX_DEBT_S for w in waits), waits  # never for ever
        # no refill: the 20th call waits about 2 s (20 calls at 10/s, less the time the
        # calls took); a refilled bucket (the old answer to a tampered level) gives 1 s
        assert waits[-1] >= 1.1, waits
        assert waits[-1] <= 20 / RATE + 1.0, waits  # and not a tampered debt's hours

    asyncio.run(scenario())


def test_a_bucket_missing_just_after_an_outage_starts_empty(redis_url: str) -> None:
    async def scenario() -> None:
        buckets = _buckets(redis_url)
        assert await buckets.reserve(1, 0) == 0  # a new key is a full bucket
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(buckets.keys[0])  # Redis restarted without its data ...
        finally:
            client.close()
        buckets.outages, buckets.answered_at = 1, buckets.clock()  # ... during an outage
        waits = await _waits(buckets, 5)
        await buckets.close()
        assert waits[0] > 0  # no fresh burst on top of what was paced alone meanwhile
        assert waits[-1] > waits[0]  # and each call queues behind the one before

    asyncio.run(scenario())


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "abc", "1e300", b"-5"])
def test_every_wait_read_back_is_bounded(raw: str | bytes) -> None:
    wait = bounded_wait(raw)
    assert 0 <= wait <= MAX_DEBT_S
