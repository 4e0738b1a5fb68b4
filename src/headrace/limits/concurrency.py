"""A first-in-first-out concurrency limit with a lock-free fast path."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..errors import PipelineError

__all__ = ["ConcurrencyLimit", "ConcurrencyStatistics"]


@dataclass(frozen=True, slots=True)
class ConcurrencyStatistics:
    """A snapshot of a :class:`ConcurrencyLimit`.

    Attributes:
        limit: how many callers may hold a slot at once.
        in_use: slots held now.
        waiting: callers waiting for a slot now.
        peak: the most slots ever held at once.
        admitted: slots granted so far.
        waited: of those, how many had to wait for a slot.
    """

    limit: int
    in_use: int
    waiting: int
    peak: int
    admitted: int
    waited: int


class ConcurrencyLimit:
    """Admits at most ``limit`` holders at once; waiters are served in arrival order.

    The engine calls :meth:`try_acquire` first, which takes a free slot without
    awaiting anything, and only awaits :meth:`acquire` when none is free. A
    released slot is handed straight to the oldest waiter, so a newcomer can never
    overtake a caller that is already waiting.

    Args:
        limit: the number of slots, at least 1.

    Raises:
        PipelineError: ``limit`` is not a positive integer.
    """

    __slots__ = ("_admitted", "_free", "_limit", "_peak", "_waited", "_waiters")

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise PipelineError(f"concurrency must be a positive integer, got {limit!r}")
        self._limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._peak = 0
        self._admitted = 0
        self._waited = 0

    @property
    def limit(self) -> int:
        """The number of slots."""
        return self._limit

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never blocks."""
        if self._free and not self._waiters:
            self._free -= 1
            self._admitted += 1
            in_use = self._limit - self._free
            if in_use > self._peak:
                self._peak = in_use
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot, first come first served."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._waited += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # The slot was handed over just as we were cancelled: give it back.
                self.release()
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back, handing it to the oldest waiter if there is one."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self._admitted += 1
                future.set_result(None)
                return
        self._free += 1

    def statistics(self) -> ConcurrencyStatistics:
        """Return a snapshot of this limit's state and counters."""
        return ConcurrencyStatistics(
            limit=self._limit,
            in_use=self._limit - self._free,
            waiting=len(self._waiters),
            peak=self._peak,
            admitted=self._admitted,
            waited=self._waited,
        )
