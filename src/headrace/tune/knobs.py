"""The settings ``headrace bench`` sweeps, and the pipeline it sweeps them on.

A bench or profile loads the pipeline for itself, so it changes that copy in place:
the knob's value on the steps it names, the LLM clients pointed at a simulator,
and the steps' caches off (a cache hit would measure the cache, not the step).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineError
from ..llm.client import Client
from ..pipeline.step import Step
from ..sim import SimConfig, SimServer, serve

__all__ = [
    "KNOBS",
    "Sweep",
    "all_steps",
    "point_at",
    "simulated",
    "tune",
    "tuned_steps",
    "without_caches",
]

KNOBS: dict[str, str] = {
    "concurrency": "calls (or batches) a step has in flight",
    "batch": "the most items in one call of a batched step",
    "pack": "items per request of an LLM transduce step",
    "window": "items in flight in the whole run",
}
"""What ``--sweep`` may change, and what each one is."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """One setting and the values to try, in increasing order (``concurrency=8,16,32``)."""

    knob: str
    values: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``KNOB=V1,V2,...`` as a sweep.

        Raises:
            ValueError: an unknown knob, or values that are not whole numbers >= 1.
        """
        knob, sep, listed = text.partition("=")
        knob = knob.strip()
        if not sep or knob not in KNOBS:
            raise ValueError(
                f"--sweep is KNOB=V1,V2,... with KNOB one of {', '.join(KNOBS)}; got {text!r}"
            )
        try:
            values = sorted({int(v) for v in listed.split(",") if v.strip()})
        except ValueError:
            raise ValueError(
                f"--sweep {knob}: the values must be whole numbers, got {listed!r}"
            ) from None
        if len(values) < 2 or values[0] < 1:
            raise ValueError(f"--sweep {knob}: give at least two values, each >= 1")
        return cls(knob, tuple(values))


def all_steps(root: Step[Any, Any]) -> Iterator[Step[Any, Any]]:
    """Every step in ``root``, itself included, each once (fallback steps too)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(reversed(current.children()))
        fallback = getattr(getattr(current, "options", None), "fallback", None)
        if fallback is not None:
            stack.append(fallback.step)


def tuned_steps(root: Step[Any, Any], knob: str, names: list[str] | None) -> list[Step[Any, Any]]:
    """The steps a sweep of ``knob`` changes: those named; else the LLM steps that have
    it (the provider is what a sweep is usually about); else every step that has it.

    Raises:
        PipelineError: a named step is missing or has no such knob, or none has it.
    """
    steps = {s.name: s for s in all_steps(root)}
    if names:
        missing = [n for n in names if n not in steps]
        if missing:
            raise PipelineError(
                f"no step named {', '.join(map(repr, missing))} in the pipeline; "
                f"its steps are {', '.join(map(repr, steps))}"
            )
        chosen = [steps[n] for n in names]
        without = [s.name for s in chosen if knob not in s.knobs()]
        if without:
            raise PipelineError(f"step {without[0]!r} has no {knob!r} to sweep")
        return chosen
    chosen = [s for s in steps.values() if knob in s.knobs()]
    calling = [s for s in chosen if isinstance(getattr(s, "client", None), Client)]
    chosen = calling or chosen
    if not chosen:
        raise PipelineError(f"no step in the pipeline has a {knob!r} to sweep")
    return chosen


def tune(root: Step[Any, Any], steps: list[Step[Any, Any]], knob: str, value: int) -> None:
    """Set ``knob`` to ``value`` on ``steps`` (inside ``root``), in place."""
    for chosen in steps:
        chosen._tune(knob, value)
    for step in all_steps(root):  # a pack changes the requests, so the fingerprints
        step._fingerprint = None


def without_caches(root: Step[Any, Any]) -> list[str]:
    """Turn off every step's cache, in place; the names of the steps that had one."""
    turned_off = []
    for step in all_steps(root):
        options = getattr(step, "options", None)
        if getattr(options, "cache", None) is not None:
            step.options = options.replace(f"step {step.name!r}", cache=None)  # type: ignore[attr-defined, union-attr]
            step.cache = None  # type: ignore[attr-defined]
            turned_off.append(step.name)
    return turned_off


def point_at(root: Step[Any, Any], base_url: str) -> int:
    """Send every LLM step's requests to ``base_url`` (a simulator) instead, in place;
    the number of clients moved. Steps that shared a client still share one, so its
    rate limit stays one limit; no key is sent there."""
    moved: dict[int, Client] = {}
    for step in all_steps(root):
        client = getattr(step, "client", None)
        if not isinstance(client, Client):
            continue
        if id(client) not in moved:
            there = copy.copy(client)
            there.base_url = base_url.rstrip("/")
            there.identity = there.base_url
            there.sends_key = False
            moved[id(client)] = there
        step.client = moved[id(client)]  # type: ignore[attr-defined]
    return len(moved)


@contextlib.contextmanager
def simulated(config: SimConfig | None) -> Iterator[SimServer | None]:
    """A ``headrace sim`` in a child process for the block (``None``: no simulator)."""
    if config is None:
        yield None
        return
    with serve(config, process=True) as server:
        yield server
