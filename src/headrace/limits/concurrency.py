"""A first-in-first-out concurrency limit with a lock-free fast path."""

from __future__ import annotations

import asyncio
import math
from collections import deque

from ..errors import PipelineError
from ..metrics.readings import SlotsReading
from ..values.checks import positive_int

__all__ = [
    "AdaptiveConcurrency",
    "ConcurrencyController",
    "ConcurrencyLimit",
    "ConcurrencyStatistics",
]


ConcurrencyStatistics = SlotsReading
"""A snapshot of a :class:`ConcurrencyLimit` (its ``statistics()``)."""


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
        positive_int(limit, "concurrency")
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
        if self._free > 0 and not self._waiters:
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
            elif future in self._waiters:  # release() may have dropped it already
                self._waiters.remove(future)
            raise

    def set_limit(self, limit: int) -> None:
        """Change the number of slots; a lower limit takes effect as holders release."""
        self._free += limit - self._limit
        self._limit = limit
        while self._free > 0 and self._waiters:
            self._free -= 1
            self.release()

    def release(self) -> None:
        """Give a slot back, handing it to the oldest waiter if there is one."""
        if self._free < 0:  # the limit was lowered: this slot is gone
            self._free += 1
            return
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


class AdaptiveConcurrency:
    """A concurrency limit that finds itself: ``hr.step(concurrency=hr.AdaptiveConcurrency())``.

    It starts at ``initial`` and, once per round (as many finished calls as the
    limit), moves:

    - **doubles** while calls are healthy, until the first sign of trouble (slow start);
    - then **adds one** while healthy;
    - **cuts by 10%** when the calls' recent latency (a moving average) is more
      than ``tolerance`` times the lowest latency seen: more calls in flight are
      only queueing at the provider;
    - **cuts by 25%** on a 429 (at most once a round).

    Args:
        initial: the limit to start with.
        min: the lowest limit.
        max: the highest limit (also the step's thread pool size, and what
            sizes the run's window).
        tolerance: how much slower than the best latency counts as queueing.
        shared: a Redis URL (``redis://host:6379/0``): every process of a run on a
            cluster moves one limit for the whole group (``initial``, ``min`` and
            ``max`` are the group's), each holding its share of it; see
            :mod:`headrace.limits.shared_concurrency`.
        key: the name of the shared limit in Redis (default: the step's name);
            steps that call one provider give the same key.

    Raises:
        PipelineError: an invalid value.
    """

    def __init__(
        self,
        initial: int = 8,
        *,
        min: int = 1,
        max: int = 256,
        tolerance: float = 2.0,
        shared: str | None = None,
        key: str | None = None,
    ) -> None:
        for name, value in (("initial", initial), ("min", min), ("max", max)):
            positive_int(value, f"AdaptiveConcurrency {name}")
        if not min <= initial <= max:
            raise PipelineError(
                f"AdaptiveConcurrency needs min <= initial <= max, got {min}, {initial}, {max}"
            )
        if not tolerance > 1:
            raise PipelineError(f"AdaptiveConcurrency tolerance must be > 1, got {tolerance!r}")
        if shared is not None and not shared.startswith(("redis://", "rediss://", "unix://")):
            raise PipelineError(
                f"AdaptiveConcurrency shared must be a Redis URL (redis://...), got {shared!r}"
            )
        if key is not None and (not isinstance(key, str) or not key):
            raise PipelineError(f"AdaptiveConcurrency key must be a non-empty string, got {key!r}")
        self.initial = initial
        self.min = min
        self.max = max
        self.tolerance = tolerance
        self.shared = shared
        self.key = key

    def describe(self) -> dict[str, float]:
        """The settings as plain data."""
        return {"initial": self.initial, "min": self.min, "max": self.max}

    def __repr__(self) -> str:
        shared = "" if self.shared is None else ", shared=..."
        return (
            f"AdaptiveConcurrency(initial={self.initial}, min={self.min}, max={self.max}{shared})"
        )


class ConcurrencyController:
    """Moves one run's :class:`ConcurrencyLimit` as :class:`AdaptiveConcurrency` says."""

    def __init__(self, policy: AdaptiveConcurrency, limit: ConcurrencyLimit) -> None:
        self.policy = policy
        self.limit = limit
        self.best = math.inf
        self.recent: float | None = None
        self.finished = 0
        self.slow_start = True
        self.throttled_this_round = False
        self.changes = 0

    def finished_call(self, latency_s: float) -> None:
        """A call succeeded after ``latency_s`` seconds."""
        self.best = min(self.best, latency_s)
        self.recent = latency_s if self.recent is None else 0.9 * self.recent + 0.1 * latency_s
        self._round()

    def throttled(self) -> None:
        """A call was answered 429."""
        if not self.throttled_this_round:
            self.throttled_this_round = True
            self.slow_start = False
            self._cut()
        self._round()

    def _round(self) -> None:
        self.finished += 1
        if self.finished < self.limit.limit:
            return
        self.finished = 0
        if self.throttled_this_round:
            self.throttled_this_round = False
            return
        self._end_round()

    def queueing(self) -> bool:
        """Whether recent calls are slower than the best by more than the tolerance."""
        return self.recent is not None and self.recent > self.policy.tolerance * self.best

    def _cut(self) -> None:
        """The first 429 of a round: cut the limit by 25%."""
        self._set(int(self.limit.limit * 0.75))

    def _end_round(self) -> None:
        """A round without a 429: cut when calls queue, else grow."""
        current = self.limit.limit
        if self.queueing():
            self.slow_start = False
            self._set(int(current * 0.9))
        elif self.slow_start:
            self._set(current * 2)
        else:
            self._set(current + 1)

    def _set(self, limit: int) -> None:
        limit = max(self.policy.min, min(self.policy.max, limit))
        if limit != self.limit.limit:
            self.limit.set_limit(limit)
            self.changes += 1

    async def close(self) -> None:
        """Nothing to let go of (a shared controller leaves its group)."""
