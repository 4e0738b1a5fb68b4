"""``tier="auto"``: each request sent by the cheapest tier that still meets the run's
deadline (``hr.run(..., deadline="6h")``), the work moved online as the deadline nears.

For each request, in order of price: the **batch** tier while the time left (less a
``margin`` held back) covers a batch's turnaround *and* the time the online path
would need to answer every request then in batches, were they all to come back
unanswered; else the **flex** tier (where the provider has one) while the time left
covers those requests on flex; else **online**. The turnaround is a stated prior
(``turnaround``, the p90 a provider's batch takes) until this run has seen batches
end, then the longest seen, half again. The online path's pace is the step's call
slots over its measured latency (a prior, ``latency``, until measured), capped by
the client's rate limit in force.

A watchdog looks every second: once the time left no longer covers answering online
the requests still in batches, it **rescues** them: no batch is made from then on,
every open batch is cancelled at the provider, the answers those batches finished
are collected and used (billed once, at the batch price), and only the requests
they left unanswered are sent online. Never answered twice, never paid twice. A
kill during a rescue leaves the batches in the run's ledger: the resume follows them
to their end, as the batch tier always does. Without a deadline every request goes
to the batch tier: the cheapest, whenever it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import PipelineError
from ...values.durations import to_seconds
from ..stats import LLMStats, llm_stats
from .answers import _Unfinished
from .flex import FlexTier
from .settings import BatchTier

if TYPE_CHECKING:
    from ...metrics import StepMetrics
    from ..connection import Connection
    from ..replies import Reply
    from .flex_connection import FlexConnection
    from .submitter import BatchConnection

__all__ = ["FLEX_SLOWDOWN", "AutoConnection", "AutoTier"]

_log = logging.getLogger("headrace.llm.batch")

FLEX_SLOWDOWN = 3.0
"""How much longer a flex request is planned to take than an online one (a stated
prior, on the cautious side: OpenAI says flex is slower, not by how much)."""

TICK_S = 1.0
"""How often the watchdog looks at the deadline."""


@dataclass(frozen=True, slots=True)
class AutoTier:
    """``tier="auto"`` with its settings: ``tier=hr.llm.AutoTier(turnaround="2h")``.

    Args:
        batch: the batch tier's settings when a request goes there.
        flex: the flex tier's settings; ``None``: never flex (a provider without one
            is never sent flex requests whatever this says).
        turnaround: how long a provider's batch is planned to take (its p90) until
            this run has seen batches end (seconds or ``"12h"``).
        latency: an online request's planned latency until measured.
        margin: the share of the time left held back from every plan (0 to 0.9).
    """

    batch: BatchTier = field(default_factory=BatchTier)
    flex: FlexTier | None = field(default_factory=FlexTier)
    turnaround: float | str = "12h"
    latency: float | str = "2s"
    margin: float = 0.2

    def __post_init__(self) -> None:
        if to_seconds(self.turnaround, option="AutoTier turnaround") <= 0:
            raise PipelineError("AutoTier turnaround must be more than 0 seconds")
        if to_seconds(self.latency, option="AutoTier latency") <= 0:
            raise PipelineError("AutoTier latency must be more than 0 seconds")
        if not 0 <= self.margin <= 0.9:
            raise PipelineError(f"AutoTier margin is a share from 0 to 0.9, got {self.margin!r}")

    def describe(self) -> dict[str, Any]:
        """The settings as plain data (part of the step's definition)."""
        return {
            "batch": self.batch.describe(),
            "flex": None if self.flex is None else self.flex.describe(),
            "turnaround_s": to_seconds(self.turnaround, option="AutoTier turnaround"),
            "latency_s": to_seconds(self.latency, option="AutoTier latency"),
            "margin": self.margin,
        }


class AutoConnection:
    """One LLM step's requests on the auto tier in one run (see the module's notes).

    Args:
        tier: the settings.
        online: the client's connection (with the step's retries).
        batch: the step's batch tier in this run.
        flex: the step's flex tier, where the provider has one.
        deadline_at: the run's deadline (Unix seconds), if it has one.
        calls: the step's calls at once.
        limit_rps: the client's request limit in force (requests a second), if known.
        clock: the time (Unix seconds); a test's own.
    """

    def __init__(
        self,
        tier: AutoTier,
        online: Connection,
        batch: BatchConnection,
        flex: FlexConnection | None,
        deadline_at: float | None,
        calls: int,
        limit_rps: Callable[[], float | None],
        clock: Callable[[], float] = time.time,
        stats: LLMStats | None = None,
    ) -> None:
        self.tier = tier
        self.online = online
        self.batch = batch
        self.flex = flex
        self.deadline_at = deadline_at
        self.calls = calls
        self.limit_rps = limit_rps
        self.clock = clock
        self.stats = stats or LLMStats(model="")  # where the watchdog shows the deadline
        self.latency_s = to_seconds(tier.latency, option="AutoTier latency")
        self.prior_turnaround_s = to_seconds(tier.turnaround, option="AutoTier turnaround")
        self.longest_batch_s = 0.0  # the longest a request waited in a batch that ended
        self.in_batch = 0
        self.on_flex = 0
        self.rescuing = False
        self.cancelled: set[str] = set()  # intents whose batch was cancelled
        self._watchdog: asyncio.Task[None] | None = None

    # -- the plan -----------------------------------------------------------------------

    def online_rps(self) -> float:
        """Requests a second the online path answers: its slots over its latency,
        capped by the rate limit in force."""
        pace = self.calls / max(self.latency_s, 1e-3)
        limit = self.limit_rps()
        return min(pace, limit) if limit else pace

    def turnaround_s(self) -> float:
        """A batch's planned turnaround: the prior, until batches of this run ended."""
        return self.longest_batch_s * 1.5 if self.longest_batch_s else self.prior_turnaround_s

    def time_left(self) -> float:
        """The time to the deadline, less the margin held back (``inf``: no deadline)."""
        if self.deadline_at is None:
            return float("inf")
        return (self.deadline_at - self.clock()) * (1 - self.tier.margin)

    def choose(self) -> str:
        """The cheapest tier that still meets the deadline for one more request."""
        if self.rescuing:
            return "online"
        left, rps = self.time_left(), self.online_rps()
        if left > self.turnaround_s() + (self.in_batch + 1) / rps:
            return "batch"
        slower = FLEX_SLOWDOWN
        if self.flex is not None and left > slower * (self.latency_s + (self.on_flex + 1) / rps):
            return "flex"
        return "online"

    def must_rescue(self) -> bool:
        """Whether the time left no longer covers answering online what is in batches."""
        return self.in_batch > 0 and self.time_left() <= self.in_batch / self.online_rps()

    # -- the requests -------------------------------------------------------------------

    async def chat(
        self, body: dict[str, Any], metrics: StepMetrics | None = None, *, stream: bool = False
    ) -> Reply:
        """Answer ``body`` by the tier :meth:`choose` picks (a stream: online)."""
        self._start()
        tier = "online" if stream else self.choose()
        if tier == "batch":
            self.in_batch += 1
            sent = self.clock()
            try:
                reply = await self.batch.chat(body, metrics)
            except _Unfinished:  # rescued: its batch was cancelled before it was answered
                _stats(metrics).rescued += 1
            else:
                self.longest_batch_s = max(self.longest_batch_s, self.clock() - sent)
                return reply
            finally:
                self.in_batch -= 1
        elif tier == "flex":
            assert self.flex is not None
            self.on_flex += 1
            try:
                return await self.flex.chat(body, metrics)
            finally:
                self.on_flex -= 1
        sent = self.clock()
        reply = await self.online.chat(body, metrics, stream=stream)
        took = max(self.clock() - sent, 0.0)
        self.latency_s = 0.8 * self.latency_s + 0.2 * took  # an average of the recent ones
        return reply

    # -- the watchdog -------------------------------------------------------------------

    def _start(self) -> None:
        if self._watchdog is None and self.deadline_at is not None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Every :data:`TICK_S`: rescue the requests in batches once the deadline needs
        them online (and cancel batches created since, while rescuing)."""
        while True:
            self._show()
            if not self.rescuing and self.must_rescue():
                self.rescuing = True
                _log.warning(
                    "headrace: %s requests in batches would miss the deadline: batches "
                    "cancelled, what they leave unanswered sent online",
                    f"{self.in_batch:,}",
                )
                self.batch.abandon_pending()
            if self.rescuing:
                await self._cancel_open()
            await asyncio.sleep(TICK_S)

    def _show(self) -> None:
        """The deadline as the watchdog sees it, into the step's counters (the run's
        time series, ``headrace status``)."""
        assert self.deadline_at is not None
        stats = self.stats
        stats.deadline_left_s = self.deadline_at - self.clock()
        stats.deadline_slack_s = self.time_left() - self.in_batch / self.online_rps()
        stats.in_batches = self.in_batch

    async def _cancel_open(self) -> None:
        for intent in list(self.batch.intents.values()):
            if not intent.open or intent.batch_id is None or intent.id in self.cancelled:
                continue
            try:
                await self.batch.shape.cancel(intent.batch_id)
            except Exception as exc:  # the provider away: the next look tries again
                _log.warning("headrace: cancelling batch %s: %s", intent.batch_id, exc)
                continue
            self.cancelled.add(intent.id)

    async def close(self) -> None:
        """Stop the watchdog (the batches are the batch tier's to close)."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog


def _stats(metrics: StepMetrics | None) -> LLMStats:
    if metrics is None or metrics.llm is None:
        return LLMStats(model="")
    return llm_stats(metrics)
