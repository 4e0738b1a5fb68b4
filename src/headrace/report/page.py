"""The report of a run: one self-contained HTML page, from what its store holds.

It opens with the numbers a reader looks for (done, rate, time left, share of the
limit used, cost and where it is heading), then the bottleneck and the verdicts,
then charts over the run's time: throughput against what the limits allow, each
rate limit (limit in force, requests sent, 429s, retries), cost and tokens, and
per step its latency percentiles, its slots working vs waiting, its batch sizes
and its cache hit rate; then the dead letters grouped by step and cause, and the
run's definition and sessions. Everything shown is escaped, and credentials in
URLs are scrubbed from the whole page.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from pathlib import Path

from ..errors import StorageError
from ..metrics.bottleneck import bottleneck, rate_groups
from ..metrics.progress import clock
from ..metrics.verdicts import verdicts
from ..services.secrecy import scrub_text
from ..store import StoreLocation
from ..store.session import pipeline_words
from .charts import Line, line_chart
from .record import EXAMPLES, RunRecord
from .sections import dead_section, definition_section, estimate_section, outage_banner
from .series import RunSeries

__all__ = ["EXAMPLES", "RunRecord", "document", "render_body", "render_page", "write_report"]


def render_page(record: RunRecord, *, live: bool = False) -> str:
    """The whole page; ``live`` adds the script that refreshes it from the server."""
    title = pipeline_words(record.definition.get("pipeline", "run"))
    return document(title, _content(record), live=live)


def document(title: str, body: str, *, live: bool) -> str:
    """An HTML document around ``body`` (already escaped), with the report's style."""
    refresh = _LIVE_SCRIPT if live else ""
    return scrub_text(
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>headrace: {escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{_STYLE}</style></head>'
        f'<body><main id="report">{body}</main>{refresh}</body></html>\n'
    )


def render_body(record: RunRecord) -> str:
    """The page's content (what the live page swaps in on each refresh)."""
    return scrub_text(_content(record))


def _content(record: RunRecord) -> str:
    series = RunSeries.of(record.samples)
    parts = [_header(record, series), _advice(series), _charts(series)]
    parts += [_steps(series), estimate_section(record, series), dead_section(record)]
    parts.append(definition_section(record, series))
    return "".join(parts)


def _key(name: str, label: str, value: str) -> str:
    return (
        f'<div class="key-number"><span class="label">{escape(label)}</span>'
        f'<span class="value" data-key="{name}">{escape(value)}</span></div>'
    )


def _header(record: RunRecord, series: RunSeries) -> str:
    status = record.status
    total = status.total
    finished = status.finished
    state = "running" if record.running else "not running"
    latest = series.latest
    recent = series.session_rate()
    keys = [
        _key("finished", "finished", f"{finished:,}" + (f" of {total:,}" if total else "")),
        _key("done", "outputs", f"{status.done:,}"),
        _key("dead", "dead letters", f"{status.dead:,}"),
        _key("filtered", "filtered", f"{status.filtered:,}"),
        _key("rate", "items/s (session average)", f"{recent:,.1f}"),
    ]
    if total:
        keys.append(_key("percent", "done", f"{finished / total:.1%}"))
        if record.running and recent > 0:
            keys.append(_key("eta", "time left", clock(max(0, total - finished) / recent)))
    if latest is not None:
        used = _limit_used(series)
        if used is not None:
            keys.append(_key("limit-used", "of the rate limit", f"{used:.0%}"))
    cost = series.totals("cost_usd")
    if cost or (latest is not None and latest.number("budget", "usd")):
        keys.append(_key("cost", "cost", f"${cost:,.4f}"))
        if total and finished:
            keys.append(_key("projected", "projected cost", f"${cost / finished * total:,.4f}"))
        budget = latest.number("budget", "usd") if latest is not None else 0.0
        if budget:
            keys.append(_key("budget", "budget", f"${budget:,.2f}"))
        held = latest.number("budget", "committed_usd") if latest is not None else 0.0
        if held and record.running:  # requests in flight and batches submitted, held
            keys.append(_key("committed", "committed, in flight", f"${held:,.4f}"))
    batched = [
        s
        for s in (latest.steps if latest else [])
        if s.number("llm", "batch", "requests") or s.number("llm", "batch", "rescued")
    ]
    if batched:  # the batch tier: what its requests cost, against the online price
        requests = sum(s.number("llm", "batch", "requests") for s in batched)
        online = sum(s.number("llm", "batch", "online_cost_usd") for s in batched)
        shown = f"{requests:,.0f} requests (online ${online:,.4f})"
        rescued = sum(s.number("llm", "batch", "rescued") for s in batched)
        if rescued:  # the auto tier moved these online as the deadline neared
            shown += f", {rescued:,.0f} taken out and sent online"
        keys.append(_key("batch", "from batches", shown))
    flexed = [s for s in latest.steps if s.number("llm", "flex", "requests")] if latest else []
    if flexed:  # the flex tier: its requests, refusals and what they would cost online
        requests = sum(s.number("llm", "flex", "requests") for s in flexed)
        refused = sum(s.number("llm", "flex", "refusals") for s in flexed)
        online = sum(s.number("llm", "flex", "online_cost_usd") for s in flexed)
        shown = f"{requests:,.0f} requests, {refused:,.0f} refused (online ${online:,.4f})"
        keys.append(_key("flex", "on flex", shown))
    name = escape(pipeline_words(record.definition.get("pipeline", "?")))
    return (
        f'<header><h1>{name}</h1><p class="where">{escape(record.where)}: '
        f'<b data-key="state">{state}</b>, {len(record.sessions)} session(s)</p>'
        f'{outage_banner(record, series)}<div class="keys">{"".join(keys)}</div></header>'
    )


def _limit_used(series: RunSeries) -> float | None:
    """The share of the tightest rate limit used in the last interval (requests)."""
    if not series.intervals():
        return None
    last = series.intervals()[-1]
    shares = []
    for group in rate_groups(last.after):
        per_minute = group[0].number("rate", "requests_per_minute")
        if per_minute > 0:
            sent = sum(
                last.step_delta(s.name, "llm", "requests")
                if s.part("llm") is not None
                else last.step_delta(s.name, "calls")
                for s in group
            )
            shares.append(sent / last.dt * 60 / per_minute)
    return max(shares, default=None)


def _advice(series: RunSeries) -> str:
    latest = series.latest
    if latest is None:
        return '<section class="advice"><p>No measurements yet.</p></section>'
    found = verdicts(latest.data)
    items = "".join(f'<li class="verdict">{escape(v.says)}</li>' for v in found)
    return (
        '<section class="advice"><h2>What set the pace</h2>'
        f'<p class="bottleneck">{escape(bottleneck(latest.data))}</p>'
        + (f"<h3>What to change</h3><ul>{items}</ul>" if found else "<p>Nothing to change.</p>")
        + "</section>"
    )


def _charts(series: RunSeries) -> str:
    marks = sorted(series.session_marks() + series.outage_marks())
    ideal = [*_ideal_lines(series)]
    charts = [line_chart("Throughput", [series.throughput(), *ideal], unit="items/s", marks=marks)]
    latest = series.latest
    for group in rate_groups(latest) if latest is not None else []:
        name = group[0].name
        lines = [
            series.step_rate(name, "llm", "requests", label="requests/min", per=60)
            if group[0].part("llm")
            else series.step_rate(name, "calls", label="calls/min", per=60),
            series.step_value(name, "rate", "requests_per_minute", label="limit", dashed=True),
            series.step_rate(name, "throttled", label="429s/min", per=60),
            series.step_rate(name, "retries", "retries", label="retries/min", per=60),
        ]
        charts.append(
            line_chart(
                f"Rate limit of {name}", lines, unit="per minute", marks=marks, slug=f"limit-{name}"
            )
        )
    cost = series.cumulative("cost_usd")
    if any(y for _, y in cost.points):
        cost.label = "spent"
        budget = latest.number("budget", "usd") if latest is not None else 0.0
        lines = [cost]
        if budget:
            lines.append(
                Line(
                    "budget",
                    [(cost.points[0][0], budget), (cost.points[-1][0], budget)],
                    dashed=True,
                )
            )
        charts.append(line_chart("Cost", lines, unit="USD", marks=marks))
    tokens = [
        series.cumulative_step(n, "llm", "prompt_tokens", label=f"{n} prompt")
        for n in series.step_names()
    ]
    tokens = [t for t in tokens if any(y for _, y in t.points)]
    if tokens:
        charts.append(line_chart("Tokens", tokens, unit="tokens", marks=marks))
    return f'<section class="charts"><h2>Over time</h2>{"".join(charts)}</section>'


def _ideal_lines(series: RunSeries) -> Iterable[Line]:
    """What the limits allow, in items/s: each rate limit (times the items a request
    carries), and each step's call slots over its mean latency."""
    latest = series.latest
    if latest is None:
        return
    for group in rate_groups(latest):
        step = group[0]
        per_minute = step.number("rate", "requests_per_minute")
        requests = step.requests()
        if per_minute > 0 and requests > 0:
            per_request = max(1.0, step.number("items") / requests)
            line = series.step_value(
                step.name,
                "rate",
                "requests_per_minute",
                label=f"{step.name}'s rate limit",
                dashed=True,
            )
            line.points = [(x, y / 60 * per_request) for x, y in line.points]
            yield line
    steps = [s for s in latest.steps if s.slots and s.calls and s.number("latency_ms", "mean") > 0]
    if steps:
        tight = min(steps, key=lambda s: s.slots / s.number("latency_ms", "mean"))
        per_s = tight.slots / (tight.number("latency_ms", "mean") / 1e3)
        per_call = max(1.0, tight.number("items") / max(1, tight.calls))
        xs = [x for x, _ in series.throughput().points]
        if xs:
            yield Line(
                f"{tight.name}'s {tight.slots} slots",
                [(xs[0], per_s * per_call), (xs[-1], per_s * per_call)],
                dashed=True,
            )


def _steps(series: RunSeries) -> str:
    steps = series.whole_steps()
    if not steps:
        return ""
    marks = series.session_marks()
    header = (
        "<tr><th>step</th><th>kind</th><th>slots</th><th>calls</th><th>items</th>"
        "<th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>"
    )
    rows, sections = [], []
    for name, step in steps.items():
        cells = [
            name,
            step.text("kind"),
            f"{step.slots}",
            f"{step.calls:,}",
            f"{step.number('items'):,.0f}",
            f"{step.number('errors'):,.0f}",
        ]
        cells += [f"{step.number('latency_ms', q):,.2f}" for q in ("p50", "p95", "p99")]
        rows.append(
            f'<tr data-step="{escape(name, quote=True)}">'
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + "</tr>"
        )
        charts = []
        if step.calls:
            charts.append(
                line_chart(
                    f"{name}: latency",
                    series.latency(name),
                    unit="ms",
                    marks=marks,
                    slug=f"latency-{name}",
                )
            )
            charts.append(
                line_chart(
                    f"{name}: working vs waiting",
                    series.slots(name),
                    unit="on average",
                    marks=marks,
                    slug=f"slots-{name}",
                )
            )
        if step.sizes("batch_sizes"):
            charts.append(
                line_chart(
                    f"{name}: batch size",
                    [series.batch_sizes(name)],
                    unit="items",
                    marks=marks,
                    slug=f"batches-{name}",
                )
            )
        if step.part("cache") is not None:
            charts.append(
                line_chart(
                    f"{name}: cache",
                    [series.cache_hit_rate(name)],
                    unit="%",
                    marks=marks,
                    slug=f"cache-{name}",
                )
            )
        if charts:
            sections.append(
                f'<div class="step-charts"><h3>{escape(name)}</h3>{"".join(charts)}</div>'
            )
    return (
        f'<section class="steps"><h2>Steps</h2><table>{header}{"".join(rows)}</table>'
        f"{''.join(sections)}</section>"
    )


def write_report(location: StoreLocation, path: Path) -> Path:
    """Write the report of the run at ``location`` to ``path``, atomically."""
    return write_atomically(path, render_page(RunRecord.load(location)).encode())


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a ``.partial`` file renamed over it, so that a
    kill leaves the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as exc:  # a full disk: one line with the free space, nothing half-written
        partial.unlink(missing_ok=True)
        raise StorageError.writing(path, exc) from None
    return path


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
main{max-width:1340px;margin:auto;padding:16px 24px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:24px 0 8px}h3{font-size:14px}
.where{color:#475569;margin:0 0 12px}
.outage{color:#b91c1c;font-weight:600;margin:0 0 12px}
.keys{display:flex;flex-wrap:wrap;gap:10px}
.key-number{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px}
.key-number .label{display:block;color:#64748b;font-size:12px}
.key-number .value{font-size:18px;font-weight:600}
.advice{background:#fff;border-left:4px solid #2563eb;padding:4px 16px;margin-top:16px}
.verdict{margin:4px 0}
.charts,.step-charts{display:flex;flex-wrap:wrap;gap:12px}
.charts h2,.step-charts h3{flex-basis:100%;margin-bottom:0}
figure.chart{background:#fff;border:1px solid #e2e8f0;border-radius:6px;margin:0;padding:6px}
figcaption{font-weight:600;font-size:13px}
.grid{stroke:#e2e8f0}.tick{font-size:10px;fill:#64748b}
.mark{stroke:#94a3b8;stroke-dasharray:2 3}.mark-label{font-size:10px;fill:#64748b}
.legend{font-size:11px;color:#334155}.key{margin-right:10px}
.key i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
.empty{color:#94a3b8;width:628px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #e2e8f0;padding:3px 8px}
td{text-align:right}td:first-child{text-align:left}
pre{background:#f1f5f9;padding:6px;overflow:auto;max-width:1200px;white-space:pre-wrap;overflow-wrap:anywhere}
.graph{display:flex;align-items:center;flex-wrap:wrap;gap:6px}
.box{background:#fff;border:1px solid #94a3b8;border-radius:6px;padding:6px 10px}
.box small{display:block;color:#64748b}.arrow{color:#64748b;font-size:18px}
"""

_LIVE_SCRIPT = """<script>
(function () {
  async function refresh() {
    try {
      const answer = await fetch("body", {cache: "no-store"});
      if (answer.ok) { document.getElementById("report").innerHTML = await answer.text(); }
    } catch (error) { /* the run's server went away: keep what is shown */ }
  }
  setInterval(refresh, 1500);
})();
</script>"""
