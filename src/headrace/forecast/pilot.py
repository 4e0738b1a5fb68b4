"""The pilot: a sample run for real through the whole pipeline, in chunks, each
measured step by step (see :mod:`headrace.forecast.projection` for what is made of it).

The pilot is a plain run (no run folder, no sink: nothing of the real run is
written). A step on the batch tier is run online for it, since the pilot cannot wait
a turnaround; its requests and tokens are the same either way. The LLM steps' cache
is left out of it (neither read nor written), so that what the pilot measures is
what the requests cost, however often it is run.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from ..engine.runner import run
from ..llm import LLMStep
from ..llm.stats import llm_stats
from ..llm.tier import AutoTier, BatchTier, FlexTier
from ..pipeline.step import Step
from .projection import ChunkMeasure, StepMeasure

if TYPE_CHECKING:
    from ..engine.result import RunResult
    from ..metrics import StepMetrics

__all__ = ["Pilot", "fly", "llm_steps_of"]

ONLINE_SLOTS = 64
"""The call slots a batch-tier step is projected with online (its own default)."""


class Pilot:
    """What the pilot measured: a :class:`ChunkMeasure` a chunk, and its own cost,
    time and failures."""

    def __init__(self) -> None:
        self.chunks: list[ChunkMeasure] = []
        self.cost_usd: float | None = 0.0
        self.wall_s = 0.0
        self.dead = 0
        self.dead_example: str | None = None


def fly(pipeline: Any, items: list[Any], chunks: int, seed: int) -> Pilot:
    """Run ``items`` through ``pipeline`` in ``chunks`` groups drawn at random (seeded),
    each a whole number of the most packed LLM step's packs (so fewer groups, then)."""
    llm_steps = llm_steps_of(pipeline)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    # a chunk holds whole packs of the most packed step, as the full run's requests do
    # (a pack half full would count more requests, and instructions, an item)
    pack = max((getattr(step, "pack", 1) for step in llm_steps), default=1)
    size = math.ceil(math.ceil(len(items) / chunks) / pack) * pack
    groups = [order[i : i + size] for i in range(0, len(items), size)]
    pilot = Pilot()
    tiers = {id(step): step.tier for step in llm_steps}
    kept = {id(step): (step.options, step.cache) for step in llm_steps}
    try:
        for step in llm_steps:  # online and uncached for the pilot; restored below
            if isinstance(step.tier, BatchTier | AutoTier):
                step.tier = None
            step.options = step.options.replace(f"step {step.name!r}", cache=None)
            step.cache = None
        for group in groups:
            result = run(pipeline, [items[i] for i in sorted(group)], progress=False)
            pilot.chunks.append(_measure(result, len(group), llm_steps, tiers))
            _count(pilot, result)
    finally:
        for step in llm_steps:
            step.tier = tiers[id(step)]
            step.options, step.cache = kept[id(step)]
    return pilot


def _count(pilot: Pilot, result: RunResult) -> None:
    pilot.wall_s += result.metrics.wall_s
    pilot.dead += result.items_dead
    if result.dead_letters and pilot.dead_example is None:
        dead = result.dead_letters[0]
        pilot.dead_example = f"{dead.step}: {dead.error_type}: {dead.message}"
    for metrics in result.metrics.steps:
        if metrics.llm is None or pilot.cost_usd is None:
            continue
        stats = llm_stats(metrics)
        pilot.cost_usd = pilot.cost_usd + stats.cost_usd if stats.priced else None


def llm_steps_of(pipeline: Any) -> list[LLMStep[Any, Any]]:
    """The pipeline's LLM steps, in the order a run binds them."""
    found: list[LLMStep[Any, Any]] = []
    stack = [pipeline] if isinstance(pipeline, Step) else []
    while stack:
        step = stack.pop(0)
        if isinstance(step, LLMStep):
            found.append(step)
        stack[0:0] = list(step.children())
    return found


def _measure(
    result: RunResult, items: int, llm_steps: list[LLMStep[Any, Any]], tiers: dict[int, Any]
) -> ChunkMeasure:
    seen: dict[str, int] = {}
    measures = []
    for metrics in result.metrics.steps:
        step = None
        if metrics.llm is not None:
            base = metrics.name.partition("#")[0]
            nth = seen.get(base, 0)
            seen[base] = nth + 1
            named = [s for s in llm_steps if s.name == base]
            step = named[nth] if nth < len(named) else None
        measures.append(_step_measure(metrics, step, tiers))
    return ChunkMeasure(items=items, steps=measures)


def _step_measure(
    metrics: StepMetrics, step: LLMStep[Any, Any] | None, tiers: dict[int, Any]
) -> StepMeasure:
    if metrics.llm is None or step is None:
        return StepMeasure(metrics.name, max(1, metrics.slots), metrics.working_s())
    stats = llm_stats(metrics)
    tier = tiers.get(id(step), step.tier)
    reading = metrics.rate.statistics() if metrics.rate is not None else None
    client, model = step.client, step.model

    def price(on: str, prompt: int, completion: int) -> float | None:
        found = client.price(model, on)
        return found.cost(prompt, completion) if found is not None else None

    batch = tier.batch if isinstance(tier, AutoTier) else tier
    batch = batch if isinstance(batch, BatchTier) else None
    slots = max(1, metrics.slots)
    return StepMeasure(
        name=metrics.name,
        slots=min(slots, ONLINE_SLOTS) if batch is not None else slots,
        work_s=metrics.working_s(),
        llm=True,
        chat=step.batchable,
        flex=isinstance(tier, FlexTier),
        client=id(client),
        requests=stats.requests,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        price=price,
        requests_per_minute=reading.requests_per_minute if reading else None,
        tokens_per_minute=reading.tokens_per_minute if reading else None,
        batch_size=batch.max_requests if batch else 50_000,
        batches_at_once=max(1, step.concurrency // batch.max_requests) if batch else 1,
    )
