"""What a run returns: outputs, dead letters, metrics, and a printable summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..metrics import RunMetrics

if TYPE_CHECKING:
    from ..metrics.verdicts import Verdict
    from ..store.run_store import FinishedItem

__all__ = ["RESULT_DEAD_LETTERS", "DeadLetter", "RunResult", "dead_allowed"]

RESULT_DEAD_LETTERS = 10_000
"""The most dead letters a durable run's result holds (the first, in source order):
200,000 of them would hold most of a gigabyte. ``dead.jsonl`` and the run store hold
every one; :attr:`RunResult.items_dead` counts them all."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item that failed: where, why, and after how many attempts.

    Attributes:
        index: the item's position in the source (0-based).
        item: the input item as the source yielded it.
        step: the name of the step that failed.
        error_type: the exception's type name.
        message: the exception's message.
        attempts: how many times the step was called for this item.
        error: the exception itself (not kept in serialised forms).
    """

    index: int
    item: Any
    step: str
    error_type: str
    message: str
    attempts: int = 1
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: FinishedItem) -> DeadLetter:
        """A dead letter read back from the run store."""
        return cls(
            index=row.index,
            item=row.decoded_item(),
            step=row.step or "",
            error_type=row.error_type or "",
            message=row.message or "",
            attempts=row.attempts or 1,
        )

    def to_dict(self) -> dict[str, Any]:
        """The dead letter as plain data, without the exception object."""
        return {
            "index": self.index,
            "item": self.item,
            "step": self.step,
            "error_type": self.error_type,
            "message": self.message,
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class RunResult:
    """The outcome of :func:`headrace.run`.

    Attributes:
        outputs: the outputs, when the run had no sink (empty otherwise); in input
            order when the run was ``ordered``.
        dead_letters: items that failed, in the order they failed; for a durable run
            (``run_dir``), this session's first :data:`RESULT_DEAD_LETTERS` in source
            order (``dead.jsonl`` in the run directory holds every one).
        metrics: counts, wall time and per-step measurements.
    """

    outputs: list[Any]
    dead_letters: list[DeadLetter]
    metrics: RunMetrics

    @property
    def items_in(self) -> int:
        """Items read from the source."""
        return self.metrics.items_in

    @property
    def items_out(self) -> int:
        """Items that reached the end of the pipeline."""
        return self.metrics.items_out

    @property
    def items_dead(self) -> int:
        """Items that failed (see :attr:`dead_letters`)."""
        return self.metrics.items_dead

    @property
    def items_unfinished(self) -> int:
        """Items left for a resume because the run stopped early (its budget was spent)."""
        return self.metrics.items_unfinished

    @property
    def stopped(self) -> str | None:
        """Why the run stopped before the end of its source, or ``None``."""
        return self.metrics.stopped

    @property
    def ok(self) -> bool:
        """Whether every item read ended well: no dead letter, and the run was not
        stopped early (a spent budget, a provider down) with items left unfinished."""
        return self.items_dead == 0 and self.stopped is None and self.items_unfinished == 0

    @property
    def items_filtered(self) -> int:
        """Items a step dropped on purpose."""
        return self.metrics.items_filtered

    def bottleneck(self) -> str:
        """Which part set the run's pace, as a sentence with what to do about it: a rate
        limit at its ceiling, a saturated step, or neither (see
        :mod:`headrace.metrics.bottleneck`)."""
        from ..metrics.bottleneck import bottleneck

        return bottleneck(self.metrics)

    def verdicts(self) -> list[Verdict]:
        """What to change, each found by one rule (see :mod:`headrace.metrics.verdicts`);
        empty for a healthy run."""
        from ..metrics.verdicts import verdicts

        return verdicts(self.metrics)

    def summary(self) -> str:
        """A human-readable report: counts, wall time, items/s, the bottleneck, what to
        change, and a table of steps."""
        from ..metrics.bottleneck import bottleneck
        from ..metrics.verdicts import verdicts

        m = self.metrics
        lines = [
            f"items: in {m.items_in:,} = out {m.items_out:,} + dead {m.items_dead:,} "
            f"+ filtered {m.items_filtered:,}"
            + (f" + unfinished {m.items_unfinished:,}" if m.items_unfinished else "")
            + (f" (skipped {m.items_skipped:,} finished before)" if m.items_skipped else "")
            + (f" (dropped {m.items_duplicate:,} repeated keys)" if m.items_duplicate else ""),
            f"wall time {m.wall_s:.3f}s, {m.items_per_s:,.1f} items/s",
        ]
        data = m.to_dict()
        lines.append(f"bottleneck: {bottleneck(data)}")
        lines.extend(f"to change: {verdict}" for verdict in verdicts(data))
        if m.stopped:
            lines.append(f"stopped early: {m.stopped}; resume the run to finish it")
        if any(s.llm is not None for s in m.steps):
            lines.append(f"LLM cost ${m.cost_usd:.4f}")
        header = (
            f"{'step':<24} {'calls':>9} {'items':>9} {'errors':>7} {'p50 ms':>9} "
            f"{'p95 ms':>9} {'p99 ms':>9} {'wait s':>9} {'busy s':>9}"
        )
        lines += ["", header, "-" * len(header)]
        for s in m.steps:
            lat = s.latency
            name = s.name if len(s.name) <= 24 else s.name[:23] + "…"
            if lat.count:
                timing = (
                    f"{lat.quantile(0.5) * 1e3:>9.3f} {lat.quantile(0.95) * 1e3:>9.3f} "
                    f"{lat.quantile(0.99) * 1e3:>9.3f} {s.waiting_s():>9.3f} "
                    f"{s.working_s():>9.3f}"
                )
            else:  # routers, filters and maps count items but do not time calls
                timing = " ".join(f"{'-':>9}" for _ in range(5))
            lines.append(f"{name:<24} {s.calls:>9,} {s.items:>9,} {s.errors:>7,} {timing}")
            extras = []
            if s.batch_sizes:
                sizes = sum(k * v for k, v in s.batch_sizes.items())
                extras.append(
                    f"batches {sum(s.batch_sizes.values()):,}, mean size "
                    f"{sizes / max(1, sum(s.batch_sizes.values())):.1f}, sent by "
                    + ", ".join(f"{k} {v}" for k, v in sorted(s.flushes.items()))
                )
                if s.batch_splits:
                    extras[-1] += f"; {s.batch_splits:,} halved to find failing items"
            if s.branches:
                extras.append(
                    "branches " + ", ".join(f"{k} {v}" for k, v in sorted(s.branches.items()))
                )
            if s.filtered:
                extras.append(f"filtered {s.filtered:,}")
            if s.retries or s.throttled or s.retries_delayed:
                extras.append(
                    f"retries {s.retries:,}; 429s {s.throttled:,}; delayed by the "
                    f"retry budget {s.retries_delayed:,}"
                )
            if s.rate is not None:
                rate = s.rate.statistics()
                per_minute = ", ".join(
                    f"{value:,.0f} {unit}/min"
                    for value, unit in (
                        (rate.requests_per_minute, "req"),
                        (rate.tokens_per_minute, "tok"),
                    )
                    if value is not None
                )
                extras.append(
                    f"rate {per_minute or 'unlimited'} ({rate.source}); waited "
                    f"{s.rate_waits:,} times, {s.rate_wait_s:.3f} s in all"
                    + (
                        f"; Redis down {rate.redis_outages} time(s), paced locally at "
                        f"{rate.outage_share:.0%} meanwhile"
                        if rate.redis_outages
                        else ""
                    )
                )
            circuit = s.circuit.statistics() if s.circuit is not None else None
            if circuit is not None and (circuit.opened or circuit.refused):
                extras.append(
                    f"circuit {circuit.state}: opened {circuit.opened:,} times, "
                    + (
                        f"refused {circuit.refused:,} calls"
                        if circuit.when_open == "fail"
                        else f"held {circuit.held:,} calls while open"
                    )
                )
            if s.fallbacks:
                extras.append(f"fell back {s.fallbacks:,} times")
            if s.skipped:
                extras.append(f"{s.skipped:,} failed elements skipped")
            if s.llm is not None:
                extras.append(s.llm.summary())
            if s.cache is not None:
                extras.append(s.cache.summary())
            lines.extend(f"{'':<24}   {extra}" for extra in extras)
        return "\n".join(lines)


def dead_allowed(max_dead: int | float | str, items_in: int) -> int:
    """How many dead letters ``max_dead`` allows out of ``items_in`` items.

    ``max_dead`` is a count (``10``, ``"10"``) or a share of the items read
    (``0.01``, ``"1%"``).

    Raises:
        PipelineError: ``max_dead`` is neither.
    """
    from ..errors import PipelineError

    value: object = max_dead
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else int(text)
        except ValueError:
            value = None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and 0 <= value <= 1:
        return int(value * items_in)
    raise PipelineError(
        f"max_dead must be a count (10) or a share of the items (0.01, '1%'), got {max_dead!r}"
    )
