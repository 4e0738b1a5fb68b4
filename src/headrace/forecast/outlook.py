""":func:`estimate`: a stratified sample run for real, projected to the whole source
on each tier, with p10 / p50 / p90; and :class:`Estimate`, what it says, kept with
the run (``estimate.json`` in its folder) for the report to compare with what the
run really cost and took."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..values.atomic import replace_atomically
from ..values.checks import positive_int
from ..values.durations import to_seconds
from .pilot import fly, llm_steps_of
from .projection import BATCH_TURNAROUND_S, FLEX_SLOWDOWN, TierEstimate, project
from .sampling import stratified

__all__ = ["ESTIMATE_FILE", "Estimate", "estimate"]

ESTIMATE_FILE = "estimate.json"
"""The estimate's file in a run's folder."""


@dataclass(frozen=True)
class Estimate:
    """A whole run projected from a pilot, per tier.

    Attributes:
        total: the source's items; ``sample`` those the pilot ran, in ``chunks``.
        tiers: the projection per tier (``"online"``, ``"flex"`` where every client
            has one, ``"batch"``), for a pipeline with chat LLM steps; ``"online"``
            alone otherwise.
        pilot_cost_usd: what the pilot cost (``None``: unpriced); ``pilot_wall_s`` its time.
        pilot_dead: sample items that failed (their cost is in the projection: a run
            pays for failures too).
        priors: the stated figures the projection used where it measures nothing
            (flex slowdown, batch turnaround).
    """

    total: int
    sample: int
    chunks: int
    seed: int
    tiers: dict[str, TierEstimate]
    pilot_cost_usd: float | None
    pilot_wall_s: float
    pilot_dead: int = 0
    priors: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The estimate as a table, one tier a line."""
        lines = [
            f"estimate from a pilot of {self.sample:,} of {self.total:,} items "
            f"({self.chunks} chunks, seed {self.seed}): p10 / p50 / p90",
            f"{'tier':<8}{'cost (USD)':>34}{'wall time':>34}{'requests':>28}",
        ]
        for name, tier in self.tiers.items():
            cost = tier.cost_usd
            shown = f"{cost.p10:,.4f} / {cost.p50:,.4f} / {cost.p90:,.4f}" if cost else "unpriced"
            wall = " / ".join(_duration(getattr(tier.wall_s, q)) for q in ("p10", "p50", "p90"))
            reqs = tier.requests
            asked = f"{reqs.p10:,.0f} / {reqs.p50:,.0f} / {reqs.p90:,.0f}"
            lines.append(f"{name:<8}{shown:>34}{wall:>34}{asked:>28}")
        spent = f"${self.pilot_cost_usd:.4f}" if self.pilot_cost_usd is not None else "unpriced"
        lines.append(f"the pilot cost {spent} and took {_duration(self.pilot_wall_s)}")
        if self.pilot_dead:
            lines.append(f"{self.pilot_dead:,} sample items failed: look at them before the run")
        if "batch" in self.tiers:
            low, mid, high = self.priors["batch_turnaround_s"]
            lines.append(
                f"batch: a stated turnaround of {_duration(low)} / {_duration(mid)} "
                f"/ {_duration(high)} a batch, not measured"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as plain data (what ``estimate.json`` holds)."""
        return {
            "total": self.total,
            "sample": self.sample,
            "chunks": self.chunks,
            "seed": self.seed,
            "tiers": {name: tier.to_dict() for name, tier in self.tiers.items()},
            "pilot": {
                "cost_usd": self.pilot_cost_usd,
                "wall_s": round(self.pilot_wall_s, 3),
                "dead": self.pilot_dead,
            },
            "priors": self.priors,
        }

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        """Keep the estimate in ``run_dir`` (``estimate.json``, written whole or not at all)."""
        folder = Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ESTIMATE_FILE
        replace_atomically(path, json.dumps(self.to_dict(), indent=2).encode())
        return path


def estimate(
    pipeline: Any,
    source: Any,
    *,
    sample: int = 200,
    chunks: int = 10,
    seed: int = 0,
    batch_turnaround: tuple[float | str, float | str, float | str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
) -> Estimate:
    """Run a stratified sample of ``source`` through ``pipeline`` for real (or against
    ``headrace sim``), and project the whole run's cost, requests, tokens and wall
    time on each tier, p10 / p50 / p90 (see :mod:`headrace.forecast.projection`).

    Args:
        sample: items in the pilot (one from each of ``sample`` equal runs of the source).
        chunks: groups the pilot is run in; the spread between them makes the intervals.
        seed: the seed of the sample and the chunks.
        batch_turnaround: a provider batch's turnaround, p10 / p50 / p90 (seconds or
            ``"2h"``), in place of the stated prior.
        run_dir: keep the estimate there (``estimate.json``), for the run's report.

    Raises:
        PipelineError: a bad option, or a source with no item.
    """
    positive_int(chunks, "estimate chunks")
    if chunks < 2:
        raise PipelineError("estimate chunks must be at least 2: their spread is the interval")
    turnaround = BATCH_TURNAROUND_S
    if batch_turnaround is not None:
        if len(batch_turnaround) != 3:
            raise PipelineError("estimate batch_turnaround is (p10, p50, p90): ('1h', '2h', '8h')")
        low, mid, high = (to_seconds(t, option="batch_turnaround") for t in batch_turnaround)
        if not 0 <= low <= mid <= high:
            raise PipelineError("estimate batch_turnaround must be p10 <= p50 <= p90")
        turnaround = (low, mid, high)
    drawn = stratified(source, sample, seed)
    from_source = _from_source(source)  # a Source's records are (key, value)
    values = [entry[1] if from_source else entry for entry in drawn.items]
    pilot = fly(pipeline, values, chunks, seed)
    names = ["online"]
    chat = [step for step in llm_steps_of(pipeline) if step.batchable]
    if chat:
        if all(step.client.flex_api is not None for step in chat):
            names.append("flex")
        names.append("batch")
    tiers = {name: project(pilot.chunks, drawn.total, name, turnaround) for name in names}
    result = Estimate(
        total=drawn.total,
        sample=len(values),
        chunks=len(pilot.chunks),
        seed=seed,
        tiers=tiers,
        pilot_cost_usd=pilot.cost_usd,
        pilot_wall_s=pilot.wall_s,
        pilot_dead=pilot.dead,
        priors={"flex_slowdown": FLEX_SLOWDOWN, "batch_turnaround_s": list(turnaround)},
    )
    if run_dir is not None:
        result.save(run_dir)
    return result


def _duration(seconds: float) -> str:
    """``seconds`` as a person reads a run's length: "41.2s", "6m 05s", "2h 05m", "1d 3h"."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _from_source(source: Any) -> bool:
    from ..io.records import Source

    return isinstance(source, Source)
