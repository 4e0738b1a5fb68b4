"""A profile's stacks as files to look at: speedscope JSON and an SVG flame graph."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from html import escape
from typing import Any, Protocol

import orjson

__all__ = ["Frame", "Stacks", "flame_svg", "speedscope"]

Frame = tuple[str, str, int]
"""One place in a stack: (function, file, first line)."""


class Stacks(Protocol):
    """What the drawings read of a :class:`~headrace.tune.profile.Profile`."""

    def frames(self) -> Iterator[tuple[str, tuple[Frame, ...], float]]:
        """Each distinct stack: the thread kind, the frames root first, its seconds."""


KINDS = {"loop": "event loop", "thread": "worker threads"}
ROW, WIDTH = 17, 1200


def speedscope(profile: Stacks, name: str) -> bytes:
    """The stacks in speedscope's file format (https://www.speedscope.app, or the
    ``speedscope`` npm package offline): one sampled profile per kind of thread,
    weighted in seconds."""
    frames: list[dict[str, Any]] = []
    index: dict[Frame, int] = {}
    profiles = []
    for kind, label in KINDS.items():
        samples, weights = [], []
        for seen_kind, stack, seconds in profile.frames():
            if seen_kind != kind:
                continue
            row = []
            for frame in stack:
                if frame not in index:
                    index[frame] = len(frames)
                    frames.append({"name": frame[0], "file": frame[1], "line": frame[2]})
                row.append(index[frame])
            samples.append(row)
            weights.append(round(seconds, 6))
        if samples:
            profiles.append(
                {
                    "type": "sampled",
                    "name": label,
                    "unit": "seconds",
                    "startValue": 0,
                    "endValue": round(sum(weights), 6),
                    "samples": samples,
                    "weights": weights,
                }
            )
    return orjson.dumps(
        {
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "name": name,
            "exporter": "headrace profile",
            "shared": {"frames": frames},
            "profiles": profiles,
        }
    )


def _tree(profile: Stacks) -> dict[str, Any]:
    root: dict[str, Any] = {"name": "all", "seconds": 0.0, "children": {}}
    for kind, stack, seconds in profile.frames():
        node = root
        node["seconds"] += seconds
        for name in (KINDS[kind], *(f"{f[0]} ({f[1].rsplit('/', 1)[-1]}:{f[2]})" for f in stack)):
            node = node["children"].setdefault(name, {"name": name, "seconds": 0.0, "children": {}})
            node["seconds"] += seconds
    return root


def _color(name: str) -> str:
    if name.startswith(tuple(KINDS.values())):
        return "#cbd5e1"
    hue = 10 + hashlib.sha256(name.encode()).digest()[0] % 50  # warm, stable per frame
    return f"hsl({hue},85%,62%)"


def flame_svg(profile: Stacks, title: str) -> str:
    """An SVG flame graph of the stacks (root at the top); hover a box for its seconds."""
    root = _tree(profile)
    total = root["seconds"] or 1.0
    boxes: list[str] = []
    depth_max = 0

    def draw(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        width = node["seconds"] / total * WIDTH
        if width < 0.5:
            return
        depth_max = max(depth_max, depth)
        y = 24 + depth * ROW
        label = escape(node["name"])
        share = node["seconds"] / total
        text = (
            f'<text x="{x + 3:.1f}" y="{y + 12}">{escape(node["name"][: int(width / 7)])}</text>'
            if width > 35
            else ""
        )
        boxes.append(
            f'<g class="frame"><title>{label}: {node["seconds"]:.3f} s ({share:.1%})</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
            f'fill="{_color(node["name"])}"/>{text}</g>'
        )
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            draw(child, x, depth + 1)
            x += child["seconds"] / total * WIDTH

    draw(root, 0.0, 0)
    height = 24 + (depth_max + 1) * ROW + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">'
        f'<text x="4" y="15" font-size="13">{escape(title)}</text>' + "".join(boxes) + "</svg>\n"
    )
