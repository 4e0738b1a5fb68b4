"""``headrace bench``: run a sample per value of one setting and find the knee.

Each run is a whole in-memory run of the same records, with the steps' caches off
and, with ``sim=``, every LLM client pointed at a fresh ``headrace sim`` (its buckets
refilled between runs). Each value is run ``repeats`` times (3 by default),
interleaved (the values in order, then in reverse, ...) so that a machine getting
slower or faster over the sweep does not favour one end; a point is the median run,
with the lowest and highest throughput seen (its spread) and the step that set the
pace in it (the one whose call slots were busiest).

The knee is the smallest value whose median throughput is within 10% of the best
one: past it, more of the setting buys little, and the table shows what it costs
(latency, 429s). It is said only when it stands out of the noise: when the value
before it reached, in its best run, the knee's worst, the two cannot be told apart
and the verdict says so instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from html import escape
from pathlib import Path
from typing import Any

import orjson

from ..engine.runner import arun
from ..io.records import Source
from ..limits.budget import Budget
from ..metrics import Histogram, RunMetrics, StepMetrics
from ..pipeline.step import Step
from ..report.charts import Line, line_chart
from ..report.page import document, write_atomically
from ..sim import SimConfig
from ..values.checks import positive_int
from .knobs import Sweep, point_at, simulated, tune, tuned_steps, without_caches

__all__ = ["KNEE_SHARE", "BenchPoint", "BenchResult", "bench"]

KNEE_SHARE = 0.9
"""The knee is the smallest value reaching this share of the best throughput."""


@dataclass(frozen=True, slots=True)
class BenchPoint:
    """One run of the sweep: the setting's value and what the run measured."""

    value: int
    items: int
    dead: int
    wall_s: float
    items_per_s: float
    p50_ms: float
    p95_ms: float
    throttled: int
    retries: int
    cost_usd: float
    stopped: str | None = None
    low: float = 0.0
    """The lowest throughput of the point's runs (with ``high``, its spread)."""
    high: float = 0.0
    """The highest throughput of the point's runs."""
    runs: int = 1
    """How many runs the point is the median of."""
    pace: str = ""
    """The step that set the pace in the median run (its call slots busiest)."""

    @property
    def lowest(self) -> float:
        """The lowest throughput seen (the point's own with one run)."""
        return self.low if self.runs > 1 else self.items_per_s

    @property
    def highest(self) -> float:
        """The highest throughput seen (the point's own with one run)."""
        return self.high if self.runs > 1 else self.items_per_s

    @classmethod
    def of(cls, value: int, metrics: RunMetrics, watched: list[str]) -> BenchPoint:
        """The point of a run: latency over the ``watched`` steps' calls."""
        latency = Histogram()
        for step in metrics.steps:
            if step.name in watched:
                latency.merge(step.latency)
        return cls(
            value=value,
            items=metrics.items_out,
            dead=metrics.items_dead,
            wall_s=metrics.wall_s,
            items_per_s=metrics.items_per_s,
            p50_ms=latency.quantile(0.5) * 1e3 if latency.count else 0.0,
            p95_ms=latency.quantile(0.95) * 1e3 if latency.count else 0.0,
            throttled=sum(s.throttled for s in metrics.steps),
            retries=sum(s.retries for s in metrics.steps),
            cost_usd=metrics.cost_usd,
            stopped=metrics.stopped,
        )


@dataclass(slots=True)
class BenchResult:
    """A sweep's points, in the order of the values, and where it ran."""

    knob: str
    steps: list[str]
    points: list[BenchPoint] = field(default_factory=list)
    sim: dict[str, Any] | None = None
    items: int = 0

    def knee(self) -> BenchPoint | None:
        """The smallest value within :data:`KNEE_SHARE` of the best throughput."""
        if not self.points:
            return None
        best = max(p.items_per_s for p in self.points)
        return next(p for p in self.points if p.items_per_s >= KNEE_SHARE * best)

    def verdict(self) -> str:
        """One sentence: the value to use and why (or that the noise hides it)."""
        knee = self.knee()
        if knee is None:
            return "nothing measured"
        best = max(self.points, key=lambda p: p.items_per_s)
        last = self.points[-1]
        index = self.points.index(knee)
        before = self.points[index - 1] if index else None
        if before is not None and before.highest >= knee.lowest:
            return (
                f"no knee outside the noise: {self.knob}={before.value} "
                f"({_spread(before)} items/s) and {self.knob}={knee.value} "
                f"({_spread(knee)}) overlap over their runs; measure more records "
                "(--limit) or more runs (--repeats)"
            )
        said = f"knee at {self.knob}={knee.value}: {knee.items_per_s:,.1f} items/s"
        if knee is not best:
            share = knee.items_per_s / best.items_per_s
            said += f", {share:.0%} of the best ({self.knob}={best.value})"
        if last is not knee:
            costs = [f"p95 latency {knee.p95_ms:,.0f} -> {last.p95_ms:,.0f} ms"]
            if last.throttled > knee.throttled:
                costs.append(f"429s {knee.throttled:,} -> {last.throttled:,}")
            change = last.items_per_s / knee.items_per_s - 1
            said += f"; at {last.value}: throughput {change:+.0%}, " + ", ".join(costs)
        if knee is last and len(self.points) > 1:
            said += f"; throughput was still rising: try {self.knob} above {last.value}"
        if knee.runs > 1:
            said += f" (medians of {knee.runs} runs a point"
            said += f"; {knee.pace} set the pace at the knee)" if knee.pace else ")"
        if min(p.wall_s for p in self.points) < 1.0:
            said += (
                "; some points ran under a second, so start-up and the provider's burst "
                "weigh in them: a larger --limit measures the steady rate"
            )
        return said

    def table(self) -> str:
        """The points as a text table, the knee marked."""
        knee = self.knee()
        head = (
            f"{self.knob:>12} {'items/s':>9} {'spread':>15} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'429s':>6} {'retries':>8} {'dead':>6} {'cost $':>9}  pace"
        )
        rows = [head]
        for p in self.points:
            mark = "  <- knee" if p is knee else ""
            stop = f"  (stopped: {p.stopped})" if p.stopped else ""
            rows.append(
                f"{p.value:>12} {p.items_per_s:>9.1f} {_spread(p):>15} {p.p50_ms:>8.1f} "
                f"{p.p95_ms:>8.1f} {p.throttled:>6} {p.retries:>8} {p.dead:>6} "
                f"{p.cost_usd:>9.4f}  {p.pace or '-'}{mark}{stop}"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bench.json``."""
        knee = self.knee()
        return {
            "knob": self.knob,
            "steps": self.steps,
            "items": self.items,
            "sim": self.sim,
            "knee": knee.value if knee is not None else None,
            "verdict": self.verdict(),
            "points": [asdict(p) for p in self.points],
        }

    def page(self, title: str) -> str:
        """The sweep's report: the verdict, the table and three charts against the value."""
        ticks = [(float(i), str(p.value)) for i, p in enumerate(self.points)]

        def chart(name: str, unit: str, *columns: tuple[str, Callable[[BenchPoint], float]]) -> str:
            lines = [
                Line(label, [(float(i), pick(p)) for i, p in enumerate(self.points)])
                for label, pick in columns
            ]
            return line_chart(f"{name} by {self.knob}", lines, unit=unit, slug=name, ticks=ticks)

        where = (
            f"against headrace sim ({escape(_settings(self.sim))})"
            if self.sim
            else "against the pipeline's own endpoints"
        )
        body = (
            f"<h1>{escape(title)}: {escape(self.knob)} sweep</h1>"
            f'<p class="where">{self.items:,} items per point, {escape(where)}; '
            f"steps tuned: {escape(', '.join(self.steps) or 'the run')}</p>"
            f'<p class="advice">{escape(self.verdict())}</p>'
            '<div class="charts">'
            + chart("throughput", "items/s", ("items/s", lambda p: p.items_per_s))
            + chart("latency", "ms", ("p50", lambda p: p.p50_ms), ("p95", lambda p: p.p95_ms))
            + chart(
                "throttled",
                "429s",
                ("429s", lambda p: float(p.throttled)),
                ("retries", lambda p: float(p.retries)),
            )
            + "</div>"
            f"<h2>Points</h2><pre>{escape(self.table())}</pre>"
        )
        return document(f"bench {title}", body, live=False)

    def write(self, directory: Path, title: str) -> tuple[Path, Path]:
        """Write ``bench.json`` and ``report.html`` into ``directory``; their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)
        return (
            write_atomically(directory / "bench.json", data),
            write_atomically(directory / "report.html", self.page(title).encode()),
        )


def _spread(point: BenchPoint) -> str:
    """``"80.1-95.3"``: the lowest and highest throughput of a point's runs."""
    return f"{point.lowest:,.1f}-{point.highest:,.1f}"


def _settings_of(sim: SimConfig | None) -> dict[str, Any] | None:
    """The simulator's settings that differ from the defaults."""
    if sim is None:
        return None
    default = SimConfig()
    return {
        f.name: getattr(sim, f.name)
        for f in fields(SimConfig)
        if getattr(sim, f.name) != getattr(default, f.name)
    }


def _settings(sim: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (sim or {}).items())


async def bench(
    root: Step[Any, Any],
    source: Source,
    sweep: Sweep,
    *,
    steps: list[str] | None = None,
    sim: SimConfig | None = None,
    window: int | None = None,
    budget_usd: float | None = None,
    on_point: Callable[[BenchPoint], None] | None = None,
    repeats: int = 3,
) -> BenchResult:
    """Sweep ``sweep`` over ``root`` on ``source``'s records (see the module's notes).

    ``budget_usd`` is the whole sweep's: each run may spend an even share, and a
    run that reaches it stops there (its throughput is still measured).
    ``repeats`` runs each value that many times, interleaved. ``root`` is changed in
    place: give a pipeline loaded for this.

    Raises:
        PipelineError: a step named in ``steps`` is missing or has no such setting.
    """
    tuned = [] if sweep.knob == "window" else tuned_steps(root, sweep.knob, steps)
    without_caches(root)
    records = list(source.records())
    result = BenchResult(
        sweep.knob, [s.name for s in tuned], sim=_settings_of(sim), items=len(records)
    )
    positive_int(repeats, "repeats")
    runs = len(sweep.values) * repeats
    share = budget_usd / runs if budget_usd is not None else None
    watched = [s.name for s in tuned]
    seen: dict[int, list[RunMetrics]] = {value: [] for value in sweep.values}
    with simulated(sim) as server:
        if server is not None:
            point_at(root, server.url)
        for round_ in range(repeats):
            # interleaved: forward, then backward, so drift over the sweep evens out
            order = sweep.values if round_ % 2 == 0 else tuple(reversed(sweep.values))
            for value in order:
                if server is not None:
                    server.reset()
                if tuned:
                    tune(root, tuned, sweep.knob, value)
                done = await arun(
                    root,
                    _Replay(records, source),
                    window=value if sweep.knob == "window" else window,
                    progress=False,
                    budget=Budget(usd=share) if share is not None else None,
                )
                seen[value].append(done.metrics)
    for value in sweep.values:
        point = _median_point(value, seen[value], watched)
        result.points.append(point)
        if on_point is not None:
            on_point(point)
    return result


def _median_point(value: int, runs: list[RunMetrics], watched: list[str]) -> BenchPoint:
    """A value's point: its median run, with the spread of all its runs' throughput and
    the step that set the pace in the median one."""
    ordered = sorted(runs, key=lambda m: m.items_per_s)
    median = ordered[len(ordered) // 2]
    point = BenchPoint.of(value, median, watched or _busiest(median.steps))
    wall = median.wall_s
    busiest = max(median.steps, key=lambda s: s.utilisation(wall), default=None) if wall else None
    return replace(
        point,
        low=ordered[0].items_per_s,
        high=ordered[-1].items_per_s,
        runs=len(ordered),
        pace=busiest.name if busiest is not None and busiest.calls else "",
    )


def _busiest(steps: list[StepMetrics]) -> list[str]:
    """For a run-wide knob, the latency shown is the busiest step's."""
    return [max(steps, key=lambda s: s.busy_s).name] if steps else []


class _Replay(Source):
    """The records read once from a source, given again to each point's run."""

    def __init__(self, records: list[Any], of: Source) -> None:
        self._records = records
        self._of = of

    def records(self) -> Iterator[Any]:
        yield from self._records

    def count(self) -> int:
        return len(self._records)

    def describe(self) -> dict[str, Any]:
        return self._of.describe()

    @property
    def keys_unique(self) -> bool:
        return self._of.keys_unique
