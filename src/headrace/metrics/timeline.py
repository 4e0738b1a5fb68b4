"""A run's time series: its metrics written to its store every second or two.

Every ``tick_s`` the timeline takes the run's metrics (counters, histograms, the
rate limit in force, in flight per step; :meth:`RunMetrics.to_dict` with
histograms) and writes them to the run store as the current *row*. A row holds
the latest state of its interval: while the interval (``interval_s``) lasts,
each tick overwrites it, so the store always has the state of a second ago
(what the live page shows) and rows stay ``interval_s`` apart. When a session
has ``max_rows`` rows, every other one is dropped and the interval doubles: a
run of any length keeps at most ``max_rows`` rows a session, evenly spread.
Counters are cumulative within a session, so a dropped row loses no count.

Nothing is done per item: a tick reads counters the run keeps anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..store.writer import DurableWriter

__all__ = ["Timeline"]

_log = logging.getLogger("headrace.run")

TICK_S = 1.0
"""How often the current row is written."""
INTERVAL_S = 2.0
"""How far apart rows start (doubled each time a session reaches ``MAX_ROWS``)."""
MAX_ROWS = 720
"""The most rows a session keeps."""


class Timeline:
    """Writes a run's metrics to its store as a time series (see the module's notes).

    Args:
        snapshot: the run's metrics now, as plain data.
        writer: the durable run's writer (its store, under its lock); ``None`` keeps
            the latest snapshot in memory only (for an exporter).
        clock: seconds since the epoch (a test's fake clock).
    """

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        writer: DurableWriter | None,
        *,
        tick_s: float = TICK_S,
        interval_s: float = INTERVAL_S,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot = snapshot
        self._writer = writer
        self._tick_s = tick_s
        self.interval_s = interval_s
        self._max_rows = max(4, max_rows)
        self._clock = clock
        self._seq = 0
        self._row_started: float | None = None
        self.rows = 0  # rows this session keeps in the store
        self.latest: dict[str, Any] | None = None
        self._failed = False

    async def tick(self) -> None:
        """Take the metrics now and write them as the current row."""
        data = self._snapshot()
        now = self._clock()
        data["t"] = now
        self.latest = data
        started = self._row_started
        if started is None or now - started >= self.interval_s:
            self._seq += 1
            self._row_started = now
            self.rows += 1
        thin = self.rows >= self._max_rows
        if self._writer is None:
            return
        try:
            await self._writer.sample(self._seq, now, data, thin=thin)
        except Exception as exc:  # the series is an aid: a failed write never fails the run
            if not self._failed:
                _log.warning("headrace: the run's time series was not written: %s", exc)
            self._failed = True
            return
        if thin:
            self.rows = (self.rows + 1) // 2
            self.interval_s *= 2

    async def run(self, finished: asyncio.Event) -> None:
        """Tick until ``finished`` is set, then once more (the run's last state)."""
        while not finished.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick_s):
                    await finished.wait()
        await self.tick()
