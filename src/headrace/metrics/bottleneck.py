"""Which part set a run's pace, in one sentence with what to do about it.

In order:

1. **A rate limit at its ceiling.** The steps that share one
   :class:`~headrace.limits.rate.Rate` (an LLM client's, or one given to
   several steps) are one group. When the group sent at least 85% of the
   limit's requests or tokens per minute over the run, or its call slots spent
   at least half the run waiting for it, the limit is the bottleneck: more
   concurrency would only wait longer, so the advice is to pack more items per
   request or raise the limit.
2. **A saturated step.** A step's *utilisation* is the share of the wall time
   its call slots were working (a slot held while waiting for a rate limit is
   waiting, not working). The busiest step is named when it is at least half.
3. Otherwise no step was saturated: the source, the sink or the engine set the pace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .run_data import RunView, StepView

if TYPE_CHECKING:
    from .counters import RunMetrics

__all__ = ["AT_LIMIT", "bottleneck", "rate_groups", "rate_pressure"]

AT_LIMIT = 0.85
"""The share of a rate limit at which a group of steps is said to run at it."""


def rate_groups(run: RunView) -> list[list[StepView]]:
    """The steps that made calls under a rate limit, one list per limit they share."""
    groups: dict[str, list[StepView]] = {}
    for step in run.steps:
        rate = step.part("rate")
        if rate is not None and step.slots and step.calls:
            groups.setdefault(str(rate.get("group", step.name)), []).append(step)
    return list(groups.values())


def rate_pressure(steps: list[StepView], wall_s: float) -> tuple[float, str] | None:
    """How close the steps sharing one rate limit came to it: the share of the limit
    used (requests or tokens per minute, whichever is closer) and the limit in words;
    ``None`` when it is unknown (no limit, or not learned)."""
    if wall_s <= 0 or not steps:
        return None
    requests = sum(s.requests() for s in steps)
    tokens = sum(s.tokens() for s in steps)
    best: tuple[float, str] | None = None
    for used, name, unit in (
        (requests, "requests_per_minute", "rpm"),
        (tokens, "tokens_per_minute", "tokens/min"),
    ):
        per_minute = steps[0].number("rate", name)
        if per_minute <= 0:
            continue
        share = used * 60 / wall_s / per_minute
        if best is None or share > best[0]:
            best = (share, f"{per_minute:,.0f} {unit}")
    return best


def rate_waited(steps: list[StepView], wall_s: float) -> float:
    """The share of the run the group's call slots spent waiting for the limit."""
    slots = sum(s.slots for s in steps)
    if wall_s <= 0 or not slots:
        return 0.0
    return sum(s.number("rate", "wait_s") for s in steps) / (wall_s * slots)


def bottleneck(metrics: RunMetrics | Mapping[str, Any]) -> str:
    """The sentence (see the module's notes), of a run's metrics or their data."""
    run = RunView(metrics if isinstance(metrics, Mapping) else metrics.to_dict())
    wall = run.wall_s
    candidates = [s for s in run.steps if s.slots and s.calls]
    if wall <= 0 or not candidates:
        return "none: no step made a call"
    groups = rate_groups(run)
    for group in sorted(groups, key=lambda g: -sum(s.number("rate", "wait_s") for s in g)):
        pressure = rate_pressure(group, wall)
        waited = rate_waited(group, wall)
        near = pressure is not None and pressure[0] >= AT_LIMIT
        if not near and waited < 0.5:
            continue
        names = " and ".join(s.name for s in group)
        whose = f"{names}'s rate limit" if len(group) == 1 else f"the rate limit {names} share"
        packs = any(s.part("llm") is not None for s in group)
        action = "pack more items per request or raise the limit" if packs else "raise the limit"
        at = f"at {pressure[0]:.0%} of {pressure[1]}" if pressure is not None else "at its limit"
        return f"{whose}: {at}, its call slots waiting {waited:.0%} of the run: {action}"
    top = max(candidates, key=lambda s: s.utilisation(wall))
    slots = f"{top.slots} call slot{'s' if top.slots != 1 else ''}"
    if top.utilisation(wall) >= 0.5:
        batched = ""
        sizes = top.sizes("batch_sizes")
        if sizes:
            mean = sum(k * v for k, v in sizes.items()) / sum(sizes.values())
            batched = f" (batches of {mean:.1f} items on average)"
        verb = "were" if top.slots != 1 else "was"
        return (
            f"{top.name}: its {slots} {verb} busy {top.utilisation(wall):.0%} of the run{batched}"
        )
    return (
        f"no step was saturated (the busiest, {top.name}, kept its {slots} busy "
        f"{top.utilisation(wall):.0%} of the run): the source, the sink or the engine "
        "set the pace"
    )
