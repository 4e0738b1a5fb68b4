"""The parts of the report below its charts and tables: the outage banner, the dead
letters grouped by step and cause, and the run's definition and sessions."""

from __future__ import annotations

import json
import time
from collections import Counter
from html import escape

from ..metrics.run_data import number, outage_in
from ..store.session import pipeline_words
from .record import EXAMPLES, RunRecord
from .series import RunSeries

__all__ = ["dead_section", "definition_section", "estimate_section", "outage_banner"]


def outage_banner(record: RunRecord, series: RunSeries) -> str:
    """A banner while a step's provider is down (its circuit open in the latest row of a
    running run), and a line on the outages a run went through."""
    latest = series.latest
    if latest is not None and record.running:
        line = outage_in(latest.data)
        if line:
            return f'<p class="outage" data-key="outage">{escape(line)}</p>'
    downs = [label for _, label in series.outage_marks() if label.endswith(" down")]
    if not downs:
        return ""
    counted = Counter(label.removesuffix(" down") for label in downs)
    said = ", ".join(f"{step} {n} time(s)" for step, n in counted.items())
    return f'<p class="outage" data-key="outages">outages (a circuit opened): {escape(said)}</p>'


def estimate_section(record: RunRecord, series: RunSeries) -> str:
    """What ``headrace estimate`` projected before the run, per tier, beside what the run
    cost and took (empty when no estimate was kept in the run's folder)."""
    if not record.estimate:
        return ""
    cost, wall = series.totals("cost_usd"), series.totals("wall_s")
    rows = []
    for tier, figures in record.estimate.items():
        cells = []
        for what, actual, shown in (("cost_usd", cost, _dollars), ("wall_s", wall, _seconds)):
            quantiles = figures.get(what)
            if quantiles is None:
                cells.append("<td>unpriced</td>")
                continue
            low, mid, high = quantiles
            inside = "within" if low <= actual <= high else "outside"
            cells.append(
                f'<td data-key="estimate-{tier}-{what}" data-verdict="{inside}">'
                f"{shown(low)} / {shown(mid)} / {shown(high)} ({inside})</td>"
            )
        rows.append(f"<tr><td>{escape(tier)}</td>{''.join(cells)}</tr>")
    return (
        '<section class="estimate"><h2>Estimated before the run</h2>'
        "<p>The pilot's projection, p10 / p50 / p90, and whether this run's "
        f"{_dollars(cost)} and {_seconds(wall)} lie between p10 and p90 "
        "(on the tier the run used).</p>"
        f"<table><tr><th>tier</th><th>cost</th><th>wall time</th></tr>{''.join(rows)}</table>"
        "</section>"
    )


def _dollars(value: float) -> str:
    return f"${value:,.4f}"


def _seconds(value: float) -> str:
    return f"{value:,.1f} s"


def dead_section(record: RunRecord) -> str:
    if not record.dead:
        return '<section class="dead"><h2>Dead letters</h2><p>None.</p></section>'
    rows = []
    for group in record.dead:
        step, error = group.step or "?", group.error_type or "?"
        examples = "".join(
            f"<li><code>{escape(item.key)}</code>: {escape((item.message or '')[:300])}"
            f"<pre>{escape((item.item or '')[:500])}</pre></li>"
            for item in group.examples[:EXAMPLES]
        )
        rows.append(
            f'<div class="dead-group" data-step="{escape(step, quote=True)}">'
            f'<h3>{escape(step)}: {escape(error)} <span data-key="dead-{escape(step, quote=True)}">'
            f"{group.count:,}</span></h3><ul>{examples}</ul></div>"
        )
    command = f"headrace retry-dead {record.run_dir}"
    return (
        f'<section class="dead"><h2>Dead letters</h2>{"".join(rows)}'
        f"<p>After a fix, run them again: <code>{escape(command)}</code></p></section>"
    )


def definition_section(record: RunRecord, series: RunSeries) -> str:
    definition = record.definition
    boxes = '<span class="arrow">→</span>'.join(
        f'<div class="box"><b>{escape(name)}</b><small>{escape(step.text("kind"))}'
        f"{', ' + escape(step.text('executor')) if step.text('executor') else ''}"
        f", {step.slots} slot(s)</small></div>"
        for name, step in series.last_steps().items()
    )
    sessions = "".join(
        _session_row(record, series, n, started, forced, note)
        for n, started, forced, note in record.sessions
    )
    described = {k: definition.get(k) for k in ("source", "sink", "options")}
    return (
        f'<section class="definition"><h2>The run</h2><div class="graph">{boxes}</div>'
        f"<p><code>{escape(pipeline_words(definition.get('pipeline', '?')))}</code></p>"
        f"<pre>{escape(json.dumps(described, indent=2, sort_keys=True, default=str))}</pre>"
        "<table><tr><th>session</th><th>started</th><th>last seen</th><th>finished</th>"
        f"<th>outcome</th></tr>{sessions}</table></section>"
    )


def _session_row(
    record: RunRecord, series: RunSeries, n: int, started: float, forced: bool, note: str | None
) -> str:
    """One session: when it started and was last seen (its last row), the items it
    finished, and how it ended as far as its rows say."""
    rows = series.sessions.get(n) or []
    last = rows[-1] if rows else None
    seen = _when(last.t) if last is not None else ""
    data = last.data if last is not None else {}
    finished = int(sum(number(data, "items", k) for k in ("out", "dead", "filtered")))
    stopped = data.get("stopped")
    latest = n == max((s for s, *_ in record.sessions), default=n)
    if isinstance(stopped, str) and stopped:
        outcome = f"stopped early: {stopped[:160]}"
    elif latest and record.running:
        outcome = "running"
    elif latest:
        outcome = "ended"
    else:
        outcome = "ended (or was stopped); the next session went on"
    if forced:
        outcome += f"; forced: {note or ''}"
    return (
        f"<tr><td>{n}</td><td>{escape(_when(started))}</td><td>{escape(seen)}</td>"
        f"<td>{finished:,}</td><td>{escape(outcome)}</td></tr>"
    )


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
