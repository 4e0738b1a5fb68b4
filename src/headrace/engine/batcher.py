"""Coalesces items arriving one at a time into calls of up to ``max_size`` items.

A batch is sent when it is full (``size``), when its first item has waited
``max_wait`` and no call of the step is in flight (``timer``), or at once when
no unit of the run can bring another item (``idle``, see
:mod:`headrace.engine.activity`) — so the tail of a run never waits for a timer. While
calls are in flight a partial batch waits for them: each brings its items'
lanes back with new items, so the next call leaves full instead of half empty
(at high concurrency, with the window the run's limit, the timer used to send
packs of 4 of 8). At most ``concurrency`` batch calls are in flight.

If a call of several items raises an error that can be an item's fault, the
batch is halved and each half called again, down to single items, so a poison
item becomes one dead letter and its neighbours still succeed, in batches.
Errors that are not an item's (a connection refused, a 5xx or 429, a provider
down, a run stopped, a function returning the wrong number of outputs) fail the
whole batch as they are, without halving: halving would only repeat them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BatchMismatch, RunStopped
from ..limits.circuit import CircuitOpen
from ..limits.retry import is_retryable
from ..metrics import StepMetrics
from .activity import Activity
from .executors import ItemFailure

__all__ = ["MicroBatcher", "BatchCall"]

BatchCall = Callable[[list[Any]], Awaitable[list[Any]]]
"""Calls the step on a list of inputs; returns one output (or :class:`ItemFailure`) per input.

It may also return ``(output, seconds)`` pairs when it timed each item itself
(the process executor does), marked by ``timed=True`` on the batcher.
"""


class MicroBatcher:
    """The per-run micro-batcher of one batched step.

    Args:
        call: sends one batch (see :data:`BatchCall`).
        max_size: the most items in one call.
        max_wait_s: how long a partial batch may wait for more items.
        concurrency: the most batch calls in flight.
        activity: the run's activity, to know when nothing else can arrive.
        spawn: starts a task in the run's task group.
        metrics: the step's metrics (batch sizes, flush reasons, latency).
        timed: ``call`` returns ``(output, seconds)`` pairs with per-item timings.
    """

    def __init__(
        self,
        call: BatchCall,
        *,
        max_size: int,
        max_wait_s: float,
        concurrency: int,
        activity: Activity,
        spawn: Callable[[Any], Any],
        metrics: StepMetrics,
        timed: bool = False,
    ) -> None:
        self._call = call
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._concurrency = concurrency
        self._activity = activity
        self._spawn = spawn
        self._metrics = metrics
        self._timed = timed
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._arrived: list[float] = []  # when each pending item arrived
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._overdue = False
        self._loop = asyncio.get_running_loop()
        activity.on_idle(self._on_idle)

    async def submit(self, value: Any) -> Any:
        """Add one item; return its output once its batch has run.

        Raises:
            Exception: the exception its call raised for this item.
        """
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((value, future))
        self._arrived.append(time.perf_counter())
        if len(self._pending) >= self._max_size:
            self._flush("size")
        elif self._timer is None and not self._overdue:
            self._timer = self._loop.call_later(self._max_wait_s, self._on_timer)
        # This unit now waits here; whoever completes the batch re-enters it.
        self._activity.leave()
        return await future

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending:
            if self._in_flight == 0:
                self._flush("timer")
            else:
                # calls in flight bring their lanes back with new items when they
                # finish: wait for those rather than send a partial batch now
                self._overdue = True

    def _on_idle(self) -> None:
        if self._pending and self._in_flight < self._concurrency:
            self._flush("idle")

    def _flush(self, reason: str) -> None:
        if self._in_flight >= self._concurrency:
            return
        batch = self._pending[: self._max_size]
        del self._pending[: self._max_size]
        # the items' time in the batcher is their wait (the step's "items waiting")
        now = time.perf_counter()
        self._metrics.wait_s += sum(now - t for t in self._arrived[: self._max_size])
        del self._arrived[: self._max_size]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._overdue = False
        if self._pending:
            self._timer = self._loop.call_later(self._max_wait_s, self._on_timer)
        self._in_flight += 1
        self._activity.enter()  # the batch call is a running unit
        self._spawn(self._run(batch, reason))

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]], reason: str) -> None:
        try:
            values = [value for value, _ in batch]
            started = time.perf_counter()
            try:
                outcomes = await self._call_checked(values)
            except Exception as exc:
                if len(batch) == 1 or not could_be_an_items_fault(exc):
                    outcomes = [ItemFailure(exc)] * len(batch)
                else:
                    self._metrics.batch_splits += 1
                    outcomes = await self._isolate(values)
            elapsed = time.perf_counter() - started
            self._metrics.record_batch(len(batch), elapsed, reason, timed_items=self._timed)
            woken = 0
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its waiter was cancelled
                    continue
                if isinstance(outcome, ItemFailure):
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome)
                woken += 1
            self._activity.enter(woken)
        finally:
            self._in_flight -= 1
            if len(self._pending) >= self._max_size:
                self._flush("size")
            elif self._pending and self._overdue and self._in_flight == 0:
                # give the lanes this call set free one max_wait to bring their next items
                self._overdue = False
                if self._timer is None:
                    self._timer = self._loop.call_later(self._max_wait_s, self._on_timer)
            # If nothing else runs, leaving makes the run idle and flushes the rest.
            self._activity.leave()

    async def _call_checked(self, values: list[Any]) -> list[Any]:
        outcomes = await self._call(values)
        if not isinstance(outcomes, list) or len(outcomes) != len(values):
            got = len(outcomes) if isinstance(outcomes, list) else type(outcomes).__name__
            raise BatchMismatch(
                f"a batched step must return a list with one output per input: "
                f"it returned {got} for {len(values)} inputs"
            )
        if self._timed:
            timed: list[Any] = []
            for outcome, seconds in outcomes:
                self._metrics.latency.record(seconds)
                timed.append(outcome)
            return timed
        return outcomes

    async def _isolate(self, values: list[Any]) -> list[Any]:
        """Find the failing items of a failed batch by halving it, under the same call slot.

        Each half is called again; a half that fails is halved in turn, down to single
        items, which fail alone. One poison item in a batch of ``n`` costs about
        ``2 log2(n)`` calls instead of ``n``, and its neighbours still go in batches.
        """
        middle = len(values) // 2
        outcomes: list[Any] = []
        for half in (values[:middle], values[middle:]):
            try:
                outcomes.extend(await self._call_checked(half))
            except Exception as exc:
                if len(half) == 1 or not could_be_an_items_fault(exc):
                    outcomes.extend([ItemFailure(exc)] * len(half))
                else:
                    self._metrics.batch_splits += 1
                    outcomes.extend(await self._isolate(half))
        return outcomes


def could_be_an_items_fault(error: BaseException) -> bool:
    """Whether halving a failed batch could find an item to blame for ``error``.

    Not for outages (connection errors, 5xx, 429s, an open circuit), a stopped run,
    or a function that returned the wrong number of outputs: those fail every item
    of the batch as they are. Timeouts and every other error may be an item's.
    """
    if isinstance(error, BatchMismatch | RunStopped | CircuitOpen):
        return False
    if isinstance(error, TimeoutError):  # a step's timeout: one item may hang a batch
        return True
    return not is_retryable(error)
