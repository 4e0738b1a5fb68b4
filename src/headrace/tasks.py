"""Running several awaitables as one: the first failure cancels the others.

``asyncio.gather`` leaves the other calls running when one fails; these helpers
run them in a task group instead, so nothing outlives the call that started it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from .errors import StepFailed

__all__ = ["all_or_cancel", "first_leaf"]

T = TypeVar("T")


async def all_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await every awaitable at once and return their results in order.

    The first failure cancels the others, waits for them to end, and is raised
    (unwrapped from the task group's exception group).
    """

    async def wait(awaitable: Awaitable[T]) -> T:
        return await awaitable

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(wait(a)) for a in awaitables]
    except BaseExceptionGroup as failed:
        error = first_leaf(failed)
        raise error from error.__cause__
    return [task.result() for task in tasks]


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
