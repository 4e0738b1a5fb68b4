import asyncio
from collections.abc import AsyncIterator
from typing import Any

import headrace as hr


def run(pipeline: Any, items: Any, **options: Any) -> hr.RunResult:
    return hr.run(pipeline, items, progress=False, **options)


def test_batches_never_exceed_max_size_and_results_return_to_their_items() -> None:
    sizes: list[int] = []

    @hr.step(batch=hr.Batch(max_size=7, max_wait="5ms"), concurrency=3)
    async def square(xs: list[int]) -> list[tuple[int, int]]:
        sizes.append(len(xs))
        await asyncio.sleep(0)
        return [(x, x * x) for x in xs]

    result = run(square, range(500))
    assert max(sizes) <= 7 and sum(sizes) == 500
    assert sorted(result.outputs) == [(x, x * x) for x in range(500)]
    metrics = result.metrics.step("square")
    assert sum(metrics.batch_sizes.values()) == metrics.calls == len(sizes)
    assert metrics.items == 500


def test_the_tail_is_flushed_at_once_not_after_max_wait() -> None:
    @hr.step(batch=hr.Batch(max_size=4, max_wait=3600))
    def ident(xs: list[int]) -> list[int]:
        return xs

    # an hour-long max_wait would time the test out if any batch waited for its timer
    result = run(ident, range(10), window=16)
    flushes = result.metrics.step("ident").flushes
    assert flushes.get("timer", 0) == 0
    assert result.metrics.step("ident").batch_sizes == {2: 1, 4: 2}
    assert sorted(result.outputs) == list(range(10))


def test_a_full_window_waiting_at_the_batcher_is_flushed_without_the_timer() -> None:
    @hr.step(batch=hr.Batch(max_size=100, max_wait=3600))
    def ident(xs: list[int]) -> list[int]:
        return xs

    result = run(ident, range(50), window=8)
    metrics = result.metrics.step("ident")
    assert metrics.flushes == {"idle": 7}  # 6 batches of 8 and the last 2
    assert metrics.batch_sizes == {8: 6, 2: 1}


def test_items_behind_a_slow_source_are_sent_by_the_timer() -> None:
    async def trickle() -> AsyncIterator[int]:
        for i in range(6):
            await asyncio.sleep(0.03)
            yield i

    @hr.step(batch=hr.Batch(max_size=64, max_wait="1ms"))
    def ident(xs: list[int]) -> list[int]:
        return xs

    result = run(ident, trickle())
    assert sorted(result.outputs) == list(range(6))
    assert result.metrics.step("ident").flushes.get("timer", 0) >= 1


def test_a_poison_item_is_isolated_into_a_single_dead_letter() -> None:
    calls: list[list[int]] = []

    @hr.step(batch=hr.Batch(max_size=8, max_wait="1ms"), concurrency=1)
    def strict(xs: list[int]) -> list[int]:
        calls.append(list(xs))
        if 13 in xs:
            raise ValueError("13 is unlucky")
        return [x + 1 for x in xs]

    result = run(strict, range(16), window=16)
    [dead] = result.dead_letters
    assert (dead.item, dead.step, dead.error_type) == (13, "strict", "ValueError")
    assert sorted(result.outputs) == [x + 1 for x in range(16) if x != 13]
    # the batch holding 13 is halved down to it: 8 -> 4 + 4 -> 2 + 2 -> 1 + 1
    poisoned = next(c for c in calls if 13 in c)
    assert poisoned == [8, 9, 10, 11, 12, 13, 14, 15]
    retried = calls[calls.index(poisoned) + 1 :]
    assert retried == [[8, 9, 10, 11], [12, 13, 14, 15], [12, 13], [12], [13], [14, 15]]
    assert result.metrics.step("strict").batch_splits == 3
    assert "3 halved to find failing items" in result.summary()


def test_two_poison_items_in_one_batch_each_fail_alone_and_the_rest_succeed() -> None:
    calls: list[list[int]] = []

    @hr.step(batch=hr.Batch(max_size=16, max_wait="1ms"), concurrency=1)
    def strict(xs: list[int]) -> list[int]:
        calls.append(list(xs))
        if 2 in xs or 11 in xs:
            raise ValueError("unlucky")
        return [x * 10 for x in xs]

    result = run(strict, range(16), window=16, ordered=True)
    assert sorted(d.item for d in result.dead_letters) == [2, 11]
    assert result.outputs == [x * 10 for x in range(16) if x not in (2, 11)]
    assert len(calls) < 16  # halving, not every item alone


def test_a_batch_returning_the_wrong_number_of_outputs_fails_its_items() -> None:
    @hr.step(batch=hr.Batch(max_size=4, max_wait="1ms"))
    def lossy(xs: list[int]) -> list[int]:
        return xs[:-1]

    result = run(lossy, range(3))
    assert result.items_dead == 3
    # as it first happened, not what halving made of it ("got 0 for 1 inputs")
    assert {d.message for d in result.dead_letters} == {
        "a batched step must return a list with one output per input: it returned 2 for 3 inputs"
    }


def test_batch_calls_in_flight_never_exceed_the_step_concurrency() -> None:
    state = {"now": 0, "peak": 0}

    @hr.step(batch=hr.Batch(max_size=3, max_wait="1ms"), concurrency=2)
    async def tracked(xs: list[int]) -> list[int]:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        for _ in range(5):
            await asyncio.sleep(0)
        state["now"] -= 1
        return xs

    run(tracked, range(300))
    assert state["peak"] == 2


def test_a_batched_step_behind_a_fan_out_still_flushes_at_the_tail() -> None:
    @hr.step(batch=hr.Batch(max_size=64, max_wait=3600))
    def embed(xs: list[int]) -> list[int]:
        return [x * 2 for x in xs]

    pipeline = hr.step(lambda x: x) >> (embed | hr.step(lambda x: -x)) >> hr.merge()
    result = run(pipeline, range(30))
    assert len(result.outputs) == 30
    assert result.metrics.step("embed").flushes.get("timer", 0) == 0


def test_a_batched_step_inside_map_still_flushes_at_the_tail() -> None:
    @hr.step(batch=hr.Batch(max_size=64, max_wait=3600))
    def embed(xs: list[int]) -> list[int]:
        return [x * 2 for x in xs]

    result = run(hr.map(embed, concurrency=4), [[1, 2, 3], [4, 5], [6]], ordered=True)
    assert result.outputs == [[2, 4, 6], [8, 10], [12]]
    assert result.metrics.step("embed").flushes.get("timer", 0) == 0


def test_a_batch_call_that_times_out_fails_only_when_each_item_is_slow() -> None:
    @hr.step(batch=hr.Batch(max_size=4, max_wait="1ms"), timeout="100ms")
    async def slow_on_seven(xs: list[int]) -> list[int]:
        if 7 in xs:
            await asyncio.sleep(30)
        return xs

    result = run(slow_on_seven, range(10), window=10)
    assert sorted(result.outputs) == [x for x in range(10) if x != 7]
    [dead] = result.dead_letters
    assert (dead.item, dead.error_type) == (7, "StepTimeout")
