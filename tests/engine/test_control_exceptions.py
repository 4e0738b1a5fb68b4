"""A step that raises an exception meant to stop a program or a task (CancelledError,
StopIteration through a thread, SystemExit, KeyboardInterrupt), or one whose
``__str__`` raises, fails its own item: one dead letter each, and the run ends.

Every test here is bounded by pytest-timeout: a run that hangs fails it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import workers
from services import arun_quietly, run_quietly

import headrace as hr

pytestmark = pytest.mark.timeout(60)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


RAISED: dict[str, Callable[[], BaseException]] = {
    "cancelled": asyncio.CancelledError,
    "stop_iteration": StopIteration,
    "system_exit": lambda: SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt,
    "unprintable": Unprintable,
}


def _raiser(kind: str) -> Callable[[int], int]:
    def body(n: int) -> int:
        if n % 4 == 1:
            if kind == "stop_iteration":
                next(iter([]))  # the way it happens in real code
            raise RAISED[kind]()
        return n * 10

    return body


def _steps(kind: str) -> dict[str, hr.Step[Any, Any]]:
    body = _raiser(kind)

    async def async_body(n: int) -> int:
        await asyncio.sleep(0)
        return body(n)

    return {
        "async": hr.step(async_body, name="work", concurrency=3),
        "async_retried": hr.step(
            async_body, name="work", retry=hr.Retry(attempts=2, backoff=0.001)
        ),
        "thread": hr.step(body, name="work", executor="thread", concurrency=2),
        "inline": hr.step(body, name="work"),
    }


def _check(result: hr.RunResult, items: int) -> None:
    bad = [n for n in range(items) if n % 4 == 1]
    assert sorted(result.outputs) == [n * 10 for n in range(items) if n % 4 != 1]
    assert sorted(d.index for d in result.dead_letters) == bad
    for dead in result.dead_letters:
        assert dead.step == "work"
        assert dead.message  # a message, even for an exception that cannot print itself


# an inline step's StopIteration is already a RuntimeError of the coroutine it runs in
CELLS = [
    (kind, executor)
    for kind in sorted(RAISED)
    for executor in ("async", "async_retried", "thread", "inline")
    if (kind, executor) != ("stop_iteration", "inline")
]


@pytest.mark.parametrize(("kind", "executor"), CELLS)
def test_each_becomes_one_dead_letter_and_the_run_ends(kind: str, executor: str) -> None:
    step = _steps(kind)[executor]
    result = run_quietly(step, list(range(12)))
    _check(result, 12)
    assert result.metrics.items_in == 12


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_in_a_graph_too(kind: str) -> None:
    work = _steps(kind)["thread" if kind == "stop_iteration" else "async"]
    pipeline = hr.graph({"work": work, "plus": lambda n: n}, ["work -> plus"])
    result = run_quietly(pipeline, list(range(12)))
    bad = [n for n in range(12) if n % 4 == 1]
    assert sorted(d.index for d in result.dead_letters) == bad
    assert len(result.outputs) == 12 - len(bad)


def test_the_message_names_what_was_raised() -> None:
    result = run_quietly(_steps("system_exit")["thread"], [1])
    (dead,) = result.dead_letters
    assert dead.error_type == "StepRaisedControl"
    assert "SystemExit: 3" in dead.message
    result = run_quietly(_steps("unprintable")["async"], [1])
    (dead,) = result.dead_letters
    assert dead.error_type == "Unprintable"
    assert "__str__ raised RuntimeError" in dead.message


def test_a_real_cancellation_still_stops_the_run() -> None:
    started = asyncio.Event()

    @hr.step(concurrency=2)
    async def wait_forever(n: int) -> int:
        started.set()
        await asyncio.Event().wait()
        return n

    async def main() -> None:
        task = asyncio.ensure_future(arun_quietly(wait_forever, list(range(4))))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.slow
def test_in_a_process_worker_too() -> None:
    step = hr.step(workers.control_on_some, executor="process", concurrency=2)
    result = run_quietly(step, list(range(12)))
    assert sorted(result.outputs) == [n * 10 for n in range(12) if n % 4 not in (1, 2)]
    dead = {d.index: d for d in result.dead_letters}
    assert sorted(dead) == [n for n in range(12) if n % 4 in (1, 2)]
    assert "raised SystemExit: 3" in dead[1].message
    assert "raised StopIteration" in dead[2].message


@pytest.mark.parametrize("executor", ["async", "inline", "thread", "process"])
def test_a_batched_step_fails_only_its_items(executor: str) -> None:
    if executor == "process":
        step = hr.step(workers.batch_exits_on_five, executor="process", batch=hr.Batch(max_size=4))
    elif executor == "async":

        async def batch(xs: list[int]) -> list[int]:
            if 5 in xs:
                raise asyncio.CancelledError  # its own: nothing cancelled it
            return [x * 10 for x in xs]

        step = hr.step(batch, batch=hr.Batch(max_size=4, max_wait=0.01))
    else:
        options: dict[str, Any] = {"executor": "thread"} if executor == "thread" else {}
        step = hr.step(workers.batch_exits_on_five, batch=hr.Batch(max_size=4), **options)
    result = run_quietly(step, list(range(12)))
    assert 5 in {d.index for d in result.dead_letters}
    assert {d.error_type for d in result.dead_letters} == {"StepRaisedControl"}
    assert len(result.outputs) + len(result.dead_letters) == 12
