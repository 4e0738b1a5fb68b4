"""A run's time series turned into what the report draws: lines over the run's time
and the numbers at the top of the page.

Rows are cumulative within a session (see :mod:`headrace.metrics.timeline`), so a
rate over an interval is the difference of two rows over their time apart, and
a latency percentile over an interval comes from the difference of two
histograms. Sessions lie on one time axis (seconds since the first began); each
one's counters are added to the sessions before it where a line is cumulative
(cost, tokens). Values come from the store, so every one is read with
:func:`~headrace.metrics.run_data.number` (absent or mistyped: zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..metrics import Histogram
from ..metrics.run_data import RunView, StepView, number
from ..store.run_store import Sample
from .charts import Line

__all__ = ["Interval", "RunSeries"]


@dataclass(frozen=True, slots=True)
class Interval:
    """Two rows of one session in a row: what changed between them."""

    x: float  # the later row's time, in seconds since the run began
    dt: float
    before: RunView
    after: RunView

    def delta(self, *path: str) -> float:
        """How much a run-level counter grew."""
        return max(0.0, self.after.number(*path) - self.before.number(*path))

    def step_delta(self, name: str, *path: str) -> float:
        """How much a counter of step ``name`` grew."""
        return max(0.0, _number(self.after, name, path) - _number(self.before, name, path))

    def histogram(self, name: str) -> Histogram:
        """Step ``name``'s latencies recorded in this interval."""
        after = Histogram.from_sparse(_step_data(self.after, name).get("latency_hist"))
        before = Histogram.from_sparse(_step_data(self.before, name).get("latency_hist"))
        return after.minus(before)


def _step_data(run: RunView, name: str) -> Mapping[str, Any]:
    for step in run.steps:
        if step.name == name:
            return step.data
    return {}


def _number(run: RunView, name: str, path: tuple[str, ...]) -> float:
    return number(_step_data(run, name), *path)


def _finished(run: RunView) -> float:
    return sum(run.number("items", k) for k in ("out", "dead", "filtered"))


@dataclass(slots=True)
class RunSeries:
    """The rows of a run, by session, on one time axis."""

    sessions: dict[int, list[Sample]] = field(default_factory=dict)
    start: float = 0.0
    _intervals: list[Interval] = field(default_factory=list)

    @classmethod
    def of(cls, samples: list[Sample]) -> RunSeries:
        """Group ``samples`` by session; the run began when its first session did."""
        series = cls()
        for sample in sorted(samples, key=lambda s: (s.session, s.seq)):
            series.sessions.setdefault(sample.session, []).append(sample)
        starts = [rows[0].t - number(rows[0].data, "wall_s") for rows in series.sessions.values()]
        series.start = min(starts, default=0.0)
        series._intervals = list(series._between_rows())
        return series

    @property
    def latest(self) -> RunView | None:
        """The last row of the last session."""
        if not self.sessions:
            return None
        return RunView(self.sessions[max(self.sessions)][-1].data)

    def session_marks(self) -> list[tuple[float, str]]:
        """Where each session after the first began, for the charts."""
        marks = []
        for session, rows in sorted(self.sessions.items())[1:]:
            began = rows[0].t - number(rows[0].data, "wall_s") - self.start
            marks.append((began, f"session {session}"))
        return marks

    def outage_marks(self) -> list[tuple[float, str]]:
        """Where each step's provider went down (its circuit opened) and came back,
        for the charts: ``(seconds from the run's start, "tone down")``."""
        marks: list[tuple[float, str]] = []
        for rows in self.sessions.values():
            down: dict[str, bool] = {}
            for sample in rows:
                for step in RunView(sample.data).steps:
                    circuit = step.part("circuit")
                    state = circuit.get("state") if circuit is not None else None
                    now = isinstance(state, str) and state != "closed"
                    if now and not down.get(step.name):
                        began = sample.t - step.number("circuit", "down_s") - self.start
                        marks.append((began, f"{step.name} down"))
                    elif down.get(step.name) and not now:
                        marks.append((sample.t - self.start, f"{step.name} back"))
                    down[step.name] = now
        return marks

    def intervals(self) -> list[Interval]:
        """Every interval between two rows, and from each session's start to its first."""
        return self._intervals

    def _between_rows(self) -> Iterator[Interval]:
        for rows in self.sessions.values():
            before = RunView({"wall_s": 0.0})
            for sample in rows:
                after = RunView(sample.data)
                dt = after.wall_s - before.wall_s
                if dt > 0:
                    yield Interval(sample.t - self.start, dt, before, after)
                before = after

    def step_names(self) -> list[str]:
        """Every step named in any row, in the order first seen."""
        names: dict[str, None] = {}
        for rows in self.sessions.values():
            for step in RunView(rows[-1].data).steps:
                names.setdefault(step.name)
        return list(names)

    def last_steps(self) -> dict[str, StepView]:
        """Each step's data in the latest row that has it."""
        found: dict[str, StepView] = {}
        for _, rows in sorted(self.sessions.items()):
            for step in RunView(rows[-1].data).steps:
                found[step.name] = step
        return found

    def whole_steps(self) -> dict[str, StepView]:
        """Each step over the whole run: its counters summed over the sessions' last
        rows, its latency percentiles from their histograms merged; the rest (kind,
        slots) from the latest session that has it."""
        found: dict[str, dict[str, Any]] = {}
        latencies: dict[str, Histogram] = {}
        for _, rows in sorted(self.sessions.items()):
            for step in RunView(rows[-1].data).steps:
                whole = found.setdefault(step.name, {"calls": 0.0, "items": 0.0, "errors": 0.0})
                for counter in ("calls", "items", "errors"):
                    whole[counter] += step.number(counter)
                whole.update(name=step.name, kind=step.text("kind"), slots=step.slots)
                merged = latencies.setdefault(step.name, Histogram())
                merged.merge(Histogram.from_sparse(step.data.get("latency_hist")))
        for name, whole in found.items():
            whole["latency_ms"] = latencies[name].milliseconds()
        return {name: StepView(whole) for name, whole in found.items()}

    def totals(self, *path: str) -> float:
        """A run-level counter summed over sessions (each session's last row)."""
        return sum(number(rows[-1].data, *path) for rows in self.sessions.values())

    def cumulative(self, *path: str) -> Line:
        """A run-level counter over time, each session's added to the ones before."""
        line, offset = Line(path[-1]), 0.0
        for rows in self.sessions.values():
            for sample in rows:
                line.points.append((sample.t - self.start, offset + number(sample.data, *path)))
            offset += number(rows[-1].data, *path)
        return line

    def cumulative_step(self, name: str, *path: str, label: str) -> Line:
        """A step's counter over time, each session's added to the ones before (as the
        cost is), so a resumed run's chart goes on from where the last session ended."""
        line, offset = Line(label), 0.0
        for rows in self.sessions.values():
            last = 0.0
            for sample in rows:
                last = _number(RunView(sample.data), name, path)
                line.points.append((sample.t - self.start, offset + last))
            offset += last
        return line

    def session_rate(self) -> float:
        """Items finished per second over the latest session so far: an average, as the
        command line's progress bar shows (one interval's rate jumps with every batch,
        pause and shard)."""
        latest = self.latest
        if latest is None or latest.wall_s <= 0:
            return 0.0
        return _finished(latest) / latest.wall_s

    def throughput(self) -> Line:
        """Items finished per second."""
        line = Line("items/s")
        for i in self.intervals():
            done = max(0.0, _finished(i.after) - _finished(i.before))
            line.points.append((i.x, done / i.dt))
        return line

    def step_rate(self, name: str, *path: str, label: str, per: float = 1.0) -> Line:
        """A step's counter as a rate (per second, or per ``per`` seconds)."""
        line = Line(label)
        for i in self.intervals():
            if _step_data(i.after, name):
                line.points.append((i.x, i.step_delta(name, *path) / i.dt * per))
        return line

    def step_value(self, name: str, *path: str, label: str, dashed: bool = False) -> Line:
        """A step's value as it stood at each row."""
        line = Line(label, dashed=dashed)
        for i in self.intervals():
            if _step_data(i.after, name):
                line.points.append((i.x, _number(i.after, name, path)))
        return line

    def latency(self, name: str) -> list[Line]:
        """A step's p50, p95 and p99 in milliseconds, over each interval."""
        lines = [Line("p50"), Line("p95"), Line("p99")]
        for i in self.intervals():
            histogram = i.histogram(name)
            if histogram.count:
                for line, q in zip(lines, (0.5, 0.95, 0.99), strict=True):
                    line.points.append((i.x, histogram.quantile(q) * 1e3))
        return lines

    def slots(self, name: str) -> list[Line]:
        """A step's call slots working and the items waiting in front of it, on average
        over each interval, with its slots (a dashed ceiling): working near the
        ceiling is a saturated step; items waiting without it is a step held back by
        a limit (its rate limit's waits count as waiting)."""
        busy, wait = Line("slots working"), Line("items waiting")
        ceiling = self.step_value(name, "slots", label="slots", dashed=True)
        for i in self.intervals():
            if _step_data(i.after, name):
                # a call's time is counted when it ends, so a long call (a model's batch)
                # lands in one interval: never more slots working than the step has
                slots = _number(i.after, name, ("slots",)) or math.inf
                working = min(i.step_delta(name, "busy_s") / i.dt, slots)
                busy.points.append((i.x, working))
                wait.points.append((i.x, i.step_delta(name, "wait_s") / i.dt))
        return [busy, wait, ceiling]

    def batch_sizes(self, name: str) -> Line:
        """A batched step's mean batch size over each interval."""
        line = Line("mean batch size")
        for i in self.intervals():
            after = StepView(_step_data(i.after, name)).sizes("batch_sizes")
            before = StepView(_step_data(i.before, name)).sizes("batch_sizes")
            batches = sum(after.values()) - sum(before.values())
            items = sum(k * v for k, v in after.items()) - sum(k * v for k, v in before.items())
            if batches > 0:
                line.points.append((i.x, items / batches))
        return line

    def cache_hit_rate(self, name: str) -> Line:
        """A cached step's hit rate over each interval (%)."""
        line = Line("hit rate %")
        for i in self.intervals():
            after = StepView(_step_data(i.after, name)).counts("hits", within="cache")
            before = StepView(_step_data(i.before, name)).counts("hits", within="cache")
            hits = sum(after.values()) - sum(before.values())
            lookups = hits + i.step_delta(name, "cache", "misses")
            if lookups > 0:
                line.points.append((i.x, 100 * hits / lookups))
        return line
