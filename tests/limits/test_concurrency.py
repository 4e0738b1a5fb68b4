import asyncio

import pytest

from headrace import ConcurrencyLimit, PipelineError


def test_try_acquire_takes_free_slots_then_refuses() -> None:
    limit = ConcurrencyLimit(2)
    assert limit.try_acquire()
    assert limit.try_acquire()
    assert not limit.try_acquire()
    limit.release()
    assert limit.try_acquire()
    stats = limit.statistics()
    assert (stats.in_use, stats.peak, stats.admitted, stats.waited) == (2, 2, 3, 0)


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        limit = ConcurrencyLimit(1)
        order: list[int] = []
        await limit.acquire()

        async def waiter(n: int) -> None:
            await limit.acquire()
            order.append(n)
            limit.release()

        tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
        await asyncio.sleep(0)
        assert limit.statistics().waiting == 5
        limit.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_newcomer_cannot_overtake_a_waiter() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        limit.release()  # handed to the waiter, not put back
        assert not limit.try_acquire()
        await waiting
        assert limit.statistics().in_use == 1

    asyncio.run(scenario())


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limit.release()
        assert limit.statistics().in_use == 0
        assert limit.try_acquire()

    asyncio.run(scenario())


def test_slot_handed_to_a_waiter_cancelled_before_it_resumes_is_given_back() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        limit.release()  # the future is resolved, the task has not run yet
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limit.statistics().in_use == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_limit_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(PipelineError, match="concurrency must be a positive integer"):
        ConcurrencyLimit(bad)  # type: ignore[arg-type]


def test_a_waiter_cancelled_as_a_slot_is_released_raises_its_cancellation() -> None:
    """release() drops a cancelled waiter before its task runs: the task must still end
    cancelled (a ValueError here once turned Ctrl-C into a dead letter, and the run
    went on)."""

    async def main() -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)  # it waits for the slot
        waiter.cancel()
        limit.release()  # before the waiter's task runs again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limit.try_acquire()  # the slot went back, not to the cancelled waiter

    asyncio.run(main())
