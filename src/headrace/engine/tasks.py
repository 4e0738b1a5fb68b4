"""Running several awaitables as one: the first failure cancels the others.

``asyncio.gather`` leaves the other calls running when one fails; these helpers
run them in a task group instead, so nothing outlives the call that started it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StepFailed

if TYPE_CHECKING:
    from .activity import Activity

__all__ = ["first_leaf", "run_together", "spawner"]

T = TypeVar("T")


async def run_together(
    calls: Sequence[Callable[[], Awaitable[T]]], activity: Activity | None = None
) -> list[T]:
    """Run ``calls`` at the same time; return their results in order.

    The one way headrace runs several things at once for one item (a fan-out's
    branches, a map's workers, an LLM step's requests). The first call runs in
    the calling task, the others in tasks of a task group, so the first failure
    cancels the rest, waits for them to end, and is raised (unwrapped from the
    group). With the run's ``activity``, the caller's unit becomes one unit per
    call and the last call to end hands it back, so the run's count of running
    units never dips in between.
    """
    if not calls:
        return []
    if activity is not None:
        activity.enter(len(calls) - 1)
    remaining = [len(calls)]

    async def counted(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        finally:
            remaining[0] -= 1
            if remaining[0] and activity is not None:
                activity.leave()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(counted(call)) for call in calls[1:]]
            first = await counted(calls[0])
    except BaseExceptionGroup as failed:
        error = first_leaf(failed)
        raise error from error.__cause__
    return [first, *(task.result() for task in tasks)]


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in a (nested) exception group, preferring a step failure."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = error.exceptions
        else:
            leaves.append(error)
    return next((e for e in leaves if isinstance(e, StepFailed)), leaves[0])


def spawner(group: asyncio.TaskGroup) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """A function that starts a coroutine as a task of ``group``, or closes it unstarted
    once the group is shutting down (an error or a cancel): nothing new starts then."""

    def spawn(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return group.create_task(coro)
        except RuntimeError:
            # The run is already shutting down (an error or a cancel): nothing new starts.
            coro.close()
            return None

    return spawn
