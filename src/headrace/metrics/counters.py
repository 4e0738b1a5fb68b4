"""What a run measures: per-step counts, latency histograms, waits, batch sizes.

Recording is O(1) per call with fixed memory (a log-bucketed histogram, not a
list of samples), so a ten-million-item run costs the same memory as a small one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .histogram import Histogram
from .readings import CircuitReading, LLMCounters, RateReading, Readable, SlotsReading

if TYPE_CHECKING:
    from ..cache.stats import CacheStats

__all__ = ["RunMetrics", "StepMetrics", "merge_counts", "outage_line"]


def merge_counts(target: Any, other: Any) -> None:
    """Add the counters of dataclass ``other`` into ``target`` (of the same class):
    numbers and per-key counts add up, histograms merge, nested counters (LLM and
    cache statistics) merge the same way; names, flags and states stay ``target``'s."""
    for spec in dataclasses.fields(target):
        mine, theirs = getattr(target, spec.name), getattr(other, spec.name)
        if isinstance(mine, bool) or theirs is None or spec.metadata.get("kept"):
            continue
        if isinstance(mine, int | float):
            setattr(target, spec.name, mine + theirs)
        elif isinstance(mine, dict):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        elif isinstance(mine, Histogram):
            mine.merge(theirs)
        elif mine is None and spec.name in ("llm", "cache"):
            setattr(target, spec.name, dataclasses.replace(theirs))
        elif dataclasses.is_dataclass(mine):
            merge_counts(mine, theirs)


@dataclass(slots=True, eq=False)
class StepMetrics:
    """Counters of one step in one run.

    Attributes:
        name: the step's name (made unique within the run).
        kind: ``"function"``, ``"batch"``, ``"route"``, ``"filter"``, ``"map"``, ...
        calls: calls of the step's function (a batch counts once).
        items: items that passed through the step successfully.
        errors: items that failed in this step.
        filtered: items this step dropped.
        wait_s: total time items spent waiting for a slot (a batched step's: waiting in
            its micro-batcher for their batch to leave).
        busy_s: total time spent in the step's calls.
        latency: the distribution of call durations.
        batch_sizes: for batched steps, how many calls had each size.
        flushes: for batched steps, why each batch was sent (size, timer, idle).
        batch_splits: for batched steps, failed batches halved to find the failing items.
        branches: for routers, how many items took each branch.
        skipped: for maps with ``on_error="skip"``, elements whose step failed and
            were left out of the item's list.
        throttled: calls the provider answered 429 (``hr.Throttled``, or a client's 429).
        rate: the run's state of the step's :class:`~headrace.limits.rate.Rate`, whose limit
            and 429s the summary shows.
        rate_waits: calls that waited for the rate limit; ``rate_wait_s`` is their total wait.
        rate_inside_call: the rate limit and the circuit are waited for inside the step's
            calls (an LLM step's client), so ``busy_s`` holds ``rate_wait_s`` and
            ``hold_s``; see :meth:`working_s`.
        hold_s: time calls waited for an open circuit (an outage) to let them go.
        circuit: the step's circuit breaker, whose state and openings the summary shows.
        fallbacks: items this step's failure sent to its fallback step.
        slots: the step's concurrency: calls (or batch calls) it may have in flight.
        llm: an LLM step's requests, tokens, cost, repairs and packing.
        cache: a cached step's hits per tier, misses, joins and back-fills.
        executor: where a function step's calls run: ``"async"``, ``"thread"`` or
            ``"process"`` (empty for other steps).
        cpu_s: for a step run in threads, the CPU time its calls used (approximate: the
            threads add to it without a lock); with ``busy_s`` it tells a step bound by
            the GIL from one waiting on I/O.
        batch_max: a batched step's largest batch (``Batch.max_size``); 0 otherwise.
        batch_max_wait_s: how long a partial batch may wait for more items.
    """

    name: str
    kind: str
    calls: int = 0
    items: int = 0
    errors: int = 0
    filtered: int = 0
    wait_s: float = 0.0
    busy_s: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    flushes: dict[str, int] = field(default_factory=dict)
    batch_splits: int = 0
    branches: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    limiter: Readable[SlotsReading] | None = None
    retries: int = 0
    throttled: int = 0
    retries_delayed: int = 0
    rate: Readable[RateReading] | None = None
    rate_waits: int = 0
    rate_wait_s: float = 0.0
    rate_inside_call: bool = False
    hold_s: float = 0.0
    circuit: Readable[CircuitReading] | None = None
    fallbacks: int = 0
    slots: int = 0
    llm: LLMCounters | None = None
    cache: CacheStats | None = None
    executor: str = ""
    cpu_s: float = 0.0
    batch_max: int = field(default=0, metadata={"kept": True})
    batch_max_wait_s: float = field(default=0.0, metadata={"kept": True})

    def record_call(self, wait_s: float, busy_s: float) -> None:
        """Count one successful single-item call."""
        self.calls += 1
        self.items += 1
        self.wait_s += wait_s
        self.busy_s += busy_s
        self.latency.record(busy_s)

    def record_untimed_call(self, wait_s: float, busy_s: float) -> None:
        """Count one successful single-item call whose requests are timed one by one
        (:meth:`record_request`), so the call's own duration is not a latency."""
        self.calls += 1
        self.items += 1
        self.wait_s += wait_s
        self.busy_s += busy_s

    def record_request(self, service_s: float) -> None:
        """Time one request an LLM step's client sent: from the request to its answer,
        rate-limit waits and retry backoff left out."""
        self.latency.record(service_s)

    def record_batch(
        self, size: int, busy_s: float, reason: str, *, timed_items: bool = False
    ) -> None:
        """Count one batch call of ``size`` items sent because of ``reason``.

        With ``timed_items`` the latency histogram holds per-item timings recorded
        separately, so the whole call's duration is not added to it.
        """
        self.calls += 1
        self.busy_s += busy_s
        if not timed_items:
            self.latency.record(busy_s)
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
        self.flushes[reason] = self.flushes.get(reason, 0) + 1

    def detached(self) -> StepMetrics:
        """A copy that holds counters only (no limiter, rate or circuit of a live run):
        what a worker sends back to be merged with :func:`merge_counts`."""
        return dataclasses.replace(self, limiter=None, rate=None, circuit=None)

    def working_s(self) -> float:
        """Time the step's calls spent working: ``busy_s`` less the rate limit's and the
        circuit's waits where those happen inside a call."""
        inside = self.rate_wait_s + self.hold_s if self.rate_inside_call else 0.0
        return max(0.0, self.busy_s - inside)

    def waiting_s(self) -> float:
        """Time items spent waiting in the step: for a slot, the rate limit, an open
        circuit, and (batched steps) for their batch to leave."""
        return self.wait_s + self.rate_wait_s + self.hold_s

    def utilisation(self, wall_s: float) -> float:
        """The share of the run's wall time its call slots were working (0 without calls);
        a slot held while waiting for the rate limit is waiting, not working."""
        if wall_s <= 0 or not self.slots:
            return 0.0
        return self.working_s() / (wall_s * self.slots)

    def to_dict(self, *, histograms: bool = False) -> dict[str, Any]:
        """The counters as plain data (latencies in milliseconds); with ``histograms``
        the latency histogram too (``latency_hist``, see :meth:`Histogram.sparse`)."""
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "slots": self.slots,
            "calls": self.calls,
            "items": self.items,
            "errors": self.errors,
            "filtered": self.filtered,
            "wait_s": round(self.waiting_s(), 6),
            "busy_s": round(self.working_s(), 6),
            "latency_ms": self.latency.milliseconds(),
        }
        if self.executor:
            data["executor"] = self.executor
        if self.cpu_s:
            data["cpu_s"] = round(self.cpu_s, 6)
        if self.batch_max:
            data["batch_max"] = self.batch_max
            data["batch_max_wait_s"] = self.batch_max_wait_s
        if self.batch_sizes:
            data["batch_sizes"] = dict(sorted(self.batch_sizes.items()))
            data["flushes"] = dict(sorted(self.flushes.items()))
            data["batch_splits"] = self.batch_splits
        if self.branches:
            data["branches"] = dict(sorted(self.branches.items()))
        if self.skipped:
            data["skipped"] = self.skipped
        if self.retries or self.throttled or self.retries_delayed:
            data["retries"] = {
                "retries": self.retries,
                "throttled": self.throttled,
                "delayed_by_budget": self.retries_delayed,
            }
        if self.rate is not None:
            data["rate"] = {
                **self.rate.statistics().to_dict(),
                "waits": self.rate_waits,
                "wait_s": round(self.rate_wait_s, 6),
            }
        if self.circuit is not None:
            circuit = self.circuit.statistics()
            data["circuit"] = {
                "state": circuit.state,
                "opened": circuit.opened,
                "refused": circuit.refused,
                "down_s": round(circuit.down_s, 3),
                "max_outage_s": circuit.max_outage_s,
                "last_error": circuit.last_error,
            }
        if self.fallbacks:
            data["fallbacks"] = self.fallbacks
        if self.llm is not None:
            data["llm"] = self.llm.to_dict()
        if self.cache is not None:
            data["cache"] = self.cache.to_dict()
        if self.limiter is not None:
            stats = self.limiter.statistics()
            data["concurrency"] = {
                "limit": stats.limit,
                "peak": stats.peak,
                "in_use": stats.in_use,
                "waiting": stats.waiting,
            }
        if histograms:
            data["latency_hist"] = self.latency.sparse()
        return data


@dataclass(slots=True, eq=False)
class RunMetrics:
    """Counters of a whole run: items in and how each ended, wall time, and every step.

    ``items_in == items_out + items_dead + items_filtered + items_unfinished`` once a
    run has finished, where ``items_unfinished`` counts items left for a resume when
    the run was ``stopped`` early (by its budget);
    ``items_skipped`` counts source items a resume found already finished, and
    ``items_duplicate`` those dropped for repeating an earlier key
    (``duplicates="first"``); neither is in ``items_in``.

    A durable run also measures its writer: ``sink_busy_s``, the time spent writing
    outputs to the sink and committing them, and ``sink_blocked_s``, the time lanes
    waited for the writer to catch up (the sink held the run back).
    """

    items_in: int = 0
    items_out: int = 0
    items_dead: int = 0
    items_filtered: int = 0
    items_skipped: int = 0
    items_duplicate: int = 0
    items_unfinished: int = 0
    stopped: str | None = None
    wall_s: float = 0.0
    steps: list[StepMetrics] = field(default_factory=list)
    sink_busy_s: float = 0.0
    sink_blocked_s: float = 0.0

    @property
    def cost_usd(self) -> float:
        """What the run's LLM calls cost, over the steps with a price."""
        return sum(s.llm.cost_usd for s in self.steps if s.llm is not None)

    @property
    def items_per_s(self) -> float:
        """Items finished (any outcome) per second of wall time."""
        finished = self.items_out + self.items_dead + self.items_filtered
        return finished / self.wall_s if self.wall_s > 0 else 0.0

    def detached(self) -> RunMetrics:
        """A copy with every step :meth:`StepMetrics.detached` (to send between processes)."""
        return dataclasses.replace(self, steps=[m.detached() for m in self.steps])

    def merge(self, other: RunMetrics) -> None:
        """Add another part of the same run (a shard): item counts add up, and each step
        merges with the step of the same name (a step only ``other`` has is added)."""
        for name in (
            "items_in",
            "items_out",
            "items_dead",
            "items_filtered",
            "items_skipped",
            "items_duplicate",
            "items_unfinished",
            "sink_busy_s",
            "sink_blocked_s",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stopped = self.stopped or other.stopped
        mine = {m.name: m for m in self.steps}
        for theirs in other.steps:
            if theirs.name in mine:
                merge_counts(mine[theirs.name], theirs)
            else:
                self.steps.append(theirs.detached())

    def step(self, name: str) -> StepMetrics:
        """Return the metrics of the step called ``name``.

        Raises:
            KeyError: no step of that name ran.
        """
        for metrics in self.steps:
            if metrics.name == name:
                return metrics
        raise KeyError(f"no step named {name!r}; steps: {[m.name for m in self.steps]}")

    def to_dict(self, *, histograms: bool = False) -> dict[str, Any]:
        """The metrics as plain data (with each step's latency histogram if asked)."""
        return {
            "items": {
                "in": self.items_in,
                "out": self.items_out,
                "dead": self.items_dead,
                "filtered": self.items_filtered,
                "skipped": self.items_skipped,
                "duplicate": self.items_duplicate,
                "unfinished": self.items_unfinished,
            },
            "stopped": self.stopped,
            "wall_s": round(self.wall_s, 6),
            "items_per_s": round(self.items_per_s, 3),
            "sink_busy_s": round(self.sink_busy_s, 6),
            "sink_blocked_s": round(self.sink_blocked_s, 6),
            "cost_usd": round(self.cost_usd, 6),
            "steps": self._steps_data(histograms),
        }

    def _steps_data(self, histograms: bool) -> list[dict[str, Any]]:
        """Each step's data; steps sharing one rate limit name its first step as
        ``rate["group"]`` (so that a reader of the data can tell which share one)."""
        data: list[dict[str, Any]] = []
        groups: dict[int, str] = {}
        for metrics in self.steps:
            step = metrics.to_dict(histograms=histograms)
            if metrics.rate is not None and "rate" in step:
                step["rate"]["group"] = groups.setdefault(id(metrics.rate), metrics.name)
            data.append(step)
        return data

    def to_json(self) -> str:
        """The metrics as one JSON document."""
        return json.dumps(self.to_dict(), sort_keys=False)


def outage_line(step: str, state: str, down_s: float, max_outage_s: float, error: str) -> str:
    """One line on an outage: what is down, for how long, and how long until the run
    stops (``ProviderDown``) if it stays down; shown by the progress line, the live
    page and the report the moment a step's circuit opens."""
    left = max(0.0, max_outage_s - down_s)
    why = f": {error[:120]}" if error else ""
    return (
        f"provider of step {step!r} down for {down_s:,.0f} s (circuit {state}); the run "
        f"stops if it stays down {left:,.0f} s more{why}"
    )
