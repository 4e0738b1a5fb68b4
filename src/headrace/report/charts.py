"""Line charts drawn as inline SVG in Python: no script, no library, nothing fetched.

A chart is a ``<figure class="chart">`` holding an ``<svg>``: axes with a few
ticks, one ``<polyline class="series">`` per line (its ``data-points`` says how
many points it drew), dashed lines for limits, and dotted marks where a session
began. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from ..metrics.progress import clock

__all__ = ["Line", "line_chart"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


@dataclass(slots=True)
class Line:
    """One line of a chart: ``(seconds, value)`` points; ``dashed`` for a limit."""

    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False


def _nice(top: float) -> float:
    """A round number at or above ``top`` (1, 2 or 5 times a power of ten)."""
    if top <= 0 or not math.isfinite(top):
        return 1.0
    power = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 5, 10):
        if step * power >= top:
            return float(step * power)
    return float(10 * power)


def number(value: float) -> str:
    """A tick's label: ``1.2k``, ``350``, ``0.25``."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def line_chart(
    title: str,
    lines: Sequence[Line],
    *,
    unit: str = "",
    slug: str = "",
    marks: Sequence[tuple[float, str]] = (),
    ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """A chart of ``lines`` over time (seconds from the run's start); ``marks`` are
    ``(seconds, label)`` drawn as dotted vertical lines (sessions). ``ticks`` are
    ``(x, label)`` for an x axis that is not time (a sweep's values)."""
    drawn = [line for line in lines if line.points]
    name = escape(slug or title.lower().replace(" ", "-"), quote=True)
    caption = f"<figcaption>{escape(title)}{f' ({escape(unit)})' if unit else ''}</figcaption>"
    if not drawn:
        return (
            f'<figure class="chart" data-chart="{name}">{caption}'
            '<p class="empty">nothing measured</p></figure>'
        )
    xs = [x for line in drawn for x, _ in line.points] + [x for x, _ in marks]
    ys = [y for line in drawn for _, y in line.points if math.isfinite(y)]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1.0
    top = _nice(max(ys, default=1.0) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> str:
        px = LEFT + (x - x0) / (x1 - x0) * plot_w
        py = TOP + plot_h - max(0.0, min(y, top)) / top * plot_h
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title, quote=True)}">'
    ]
    for i in range(5):  # the value axis
        y = top * i / 4
        py = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
            f"{number(y)}</text>"
        )
    if ticks is None:  # the time axis
        ticks = [(x0 + (x1 - x0) * i / 4, "") for i in range(5)]
    for x, label in ticks:
        px = LEFT + (x - x0) / (x1 - x0) * plot_w
        parts.append(
            f'<text class="tick" x="{px:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(label or clock(x))}</text>"
        )
    for x, label in marks:
        px = LEFT + (x - x0) / (x1 - x0) * plot_w
        parts.append(
            f'<line class="mark" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
            f'<text class="mark-label" x="{px + 3:.1f}" y="{TOP + 10}">{escape(label)}</text>'
        )
    legend = []
    for index, line in enumerate(drawn):
        color = PALETTE[index % len(PALETTE)]
        points = [(x, y) for x, y in line.points if math.isfinite(y)]
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        parts.append(
            f'<polyline class="series" data-label="{escape(line.label, quote=True)}" '
            f'data-points="{len(points)}" fill="none" stroke="{color}" stroke-width="1.6"{dash} '
            f'points="{" ".join(at(x, y) for x, y in points)}"/>'
        )
        legend.append(
            f'<span class="key"><i style="background:{color}"></i>{escape(line.label)}</span>'
        )
    parts.append("</svg>")
    return (
        f'<figure class="chart" data-chart="{name}">{caption}{"".join(parts)}'
        f'<div class="legend">{"".join(legend)}</div></figure>'
    )
