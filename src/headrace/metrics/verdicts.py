"""Verdicts: what to change in a run, each found by one rule over its metrics.

Each rule names a part, what was measured, and the change to make:

- ``rate_limited``: steps at their rate limit (:data:`~headrace.metrics.bottleneck.AT_LIMIT`
  of it, or call slots waiting for it half the run): pack more items per request
  (``pack=``, LLM steps) or raise the limit. More concurrency would only queue.
- ``small_batches``: a batched step whose batches averaged under half their
  ``max_size``, most of them sent by the ``max_wait`` timer: raise ``max_wait``.
  Not said of a step while another one set the pace (its call slots busy half the
  run): items reach this one slowly, and waiting longer for them would not help.
- ``gil_bound``: a step run in several threads whose calls together used about one
  CPU core (60% to 115% of the run's wall time) while its threads were busy: pure
  Python holding the GIL; ``executor="process"`` uses the other cores.
- ``sink_bound``: lanes waited for the writer at least 20% of the run: the sink (or
  the disk under it) set the pace.
- ``cache_timestamp``: a cached step with no hit after at least 20 lookups whose key
  includes a field that looks like a moment in time (``fetched_at``, an ISO date):
  every item has its own key, so the cache never answers.

A healthy run gets no verdict. The rules read :meth:`RunMetrics.to_dict`'s data, so
the summary, ``headrace report`` and the live page say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .bottleneck import AT_LIMIT, rate_groups, rate_pressure, rate_waited
from .run_data import RunView, StepView

if TYPE_CHECKING:
    from .counters import RunMetrics

__all__ = ["Verdict", "verdicts"]

SMALL_BATCH = 0.5
"""Batches averaging under this share of ``max_size`` are small."""
GIL_CORE = (0.6, 1.15)
"""Threads using between these shares of one core, in all, are held by the GIL."""
SINK_BLOCKED = 0.2
"""Lanes waiting for the writer this share of the run: the sink is the bottleneck."""
CACHE_LOOKUPS = 20
"""Lookups before a cache that never answered is worth a verdict."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One thing to change.

    Attributes:
        rule: which rule found it (see the module's notes).
        step: the step it is about, or ``None`` for the run (the sink).
        says: the sentence: what was measured and what to change.
    """

    rule: str
    step: str | None
    says: str

    def __str__(self) -> str:
        return self.says


def verdicts(metrics: RunMetrics | Mapping[str, Any]) -> list[Verdict]:
    """What to change in a run, from its metrics or their data (empty when healthy)."""
    run = RunView(metrics if isinstance(metrics, Mapping) else metrics.to_dict())
    wall = run.wall_s
    if wall <= 0:
        return []
    found = _rate_limited(run, wall)
    # a step whose call slots were busy half the run set the pace; another step's
    # batches are small because items reach it slowly, and waiting longer would not help
    pace = {s.name for s in run.steps if s.slots and s.utilisation(wall) >= 0.5}
    for step in run.steps:
        if not pace or step.name in pace:
            found += _small_batches(step)
        found += _gil_bound(step, wall) + _cache_timestamp(step)
    blocked = run.number("sink_blocked_s") / wall
    if blocked >= SINK_BLOCKED:
        busy = run.number("sink_busy_s") / wall
        found.append(
            Verdict(
                "sink_bound",
                None,
                f"the sink is the bottleneck: lanes waited {blocked:.0%} of the run for "
                f"outputs to be written (the writer was writing {busy:.0%} of it): write "
                "to a faster disk or database, or to Parquet or part files",
            )
        )
    return found


def _rate_limited(run: RunView, wall: float) -> list[Verdict]:
    found = []
    for group in rate_groups(run):
        pressure = rate_pressure(group, wall)
        waited = rate_waited(group, wall)
        if (pressure is None or pressure[0] < AT_LIMIT) and waited < 0.5:
            continue
        names = " and ".join(f"`{s.name}`" for s in group)
        at = f"at {pressure[0]:.0%} of {pressure[1]}" if pressure else "at its limit"
        if any(s.part("llm") is not None for s in group):
            action = "pack more items per request (`pack=`) or raise the limit"
        else:
            action = "raise the limit, or do fewer calls (batch them)"
        found.append(
            Verdict(
                "rate_limited",
                group[0].name,
                f"{names} {'is' if len(group) == 1 else 'are'} rate-limited {at}, call slots "
                f"waiting {waited:.0%} of the run: {action}; more concurrency would only queue",
            )
        )
    return found


def _small_batches(step: StepView) -> list[Verdict]:
    largest = step.number("batch_max")
    sizes = step.sizes("batch_sizes")
    batches = sum(sizes.values())
    if largest <= 1 or batches < 10:
        return []
    mean = sum(k * v for k, v in sizes.items()) / batches
    timer = step.number("flushes", "timer")
    if mean >= SMALL_BATCH * largest or timer < batches / 2:
        return []
    wait_ms = step.number("batch_max_wait_s") * 1e3
    return [
        Verdict(
            "small_batches",
            step.name,
            f"`{step.name}` batches average {mean:.0f} of {largest:.0f}, {timer / batches:.0%} "
            f"of them sent by the timer: raise `max_wait` (now {wait_ms:g} ms) so more items "
            "join each batch, or the window so more items are in flight",
        )
    ]


def _gil_bound(step: StepView, wall: float) -> list[Verdict]:
    # advice must be an option the step has: only a function step takes executor=
    # (a model step's thread runs PyTorch, which lets go of the GIL)
    if step.text("kind") not in ("function", "batch") or step.text("executor") != "thread":
        return []
    if step.slots < 2 or step.calls < 10:
        return []
    cores = step.number("cpu_s") / wall
    if not GIL_CORE[0] <= cores <= GIL_CORE[1] or step.utilisation(wall) < 0.5:
        return []
    return [
        Verdict(
            "gil_bound",
            step.name,
            f"`{step.name}` (thread) is CPU-bound in the GIL: its {step.slots} threads used "
            f"{cores:.2f} s of CPU per second of the run, one core at most: use "
            '`executor="process"`',
        )
    ]


def _cache_timestamp(step: StepView) -> list[Verdict]:
    cache = step.part("cache")
    if cache is None:
        return []
    hits = sum(step.counts("hits", within="cache").values())
    misses = step.number("cache", "misses")
    field = cache.get("timestamp_field")
    if hits or misses < CACHE_LOOKUPS or not isinstance(field, str) or not field:
        return []
    return [
        Verdict(
            "cache_timestamp",
            step.name,
            f"`{step.name}`'s cache hit rate is 0% over {misses:,.0f} lookups: its key "
            f"includes `{field[:80]}`, which looks like a moment in time and differs for "
            "every item; key on the fields that decide the answer: "
            "`cache=hr.Cache(key=lambda item: ...)`",
        )
    ]
