"""From what a pilot measured on a sample to a whole run on each tier: cost, requests,
tokens and wall time, each as p10 / p50 / p90.

The pilot runs its sample in ``chunks`` (equal groups, drawn at random from the
sample). Each chunk gives, per source item, each step's requests, tokens and work
time. A figure for the whole run is ``total`` times the mean per item over the
chunks; its interval is that mean plus or minus Student's t (``chunks - 1`` degrees
of freedom, 80% two-sided) times the standard error between chunks: the spread of
the items sampled, counted as if drawn at random (the stratified sample spreads
less, so the interval errs wide).

Wall time on the online and flex tiers is the slowest of each step's bounds at the
chunk's rates: its call slots over its work time an item, and, for each client,
its rate limit over the requests (and tokens) an item sends; its interval is widened
by what the run's two ends add (a rate limit's first burst, sooner; the last calls
in flight, later), which chunks paced alike by a limit cannot show. Flex requests take
:data:`FLEX_SLOWDOWN` times an online one's time (a stated prior: providers say only
"slower"; a step the pilot ran on flex was measured there). On the batch tier the
chat steps' time is rounds of the provider's turnaround (:data:`BATCH_TURNAROUND_S`,
a stated prior, or ``batch_turnaround=``), one after the other for steps in series.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BATCH_TURNAROUND_S",
    "FLEX_SLOWDOWN",
    "ChunkMeasure",
    "Interval",
    "StepMeasure",
    "TierEstimate",
    "project",
]

FLEX_SLOWDOWN = 2.0
"""How much longer a flex request takes than an online one (a stated prior)."""

BATCH_TURNAROUND_S = (1200.0, 7200.0, 43200.0)
"""A provider batch's turnaround, p10 / p50 / p90: 20 minutes, 2 hours, 12 hours (a
stated prior: OpenAI and Anthropic promise 24 hours and say most finish sooner)."""

_T80 = {1: 3.078, 2: 1.886, 3: 1.638, 4: 1.533, 5: 1.476, 6: 1.440, 7: 1.415, 8: 1.397}
_T80 |= {9: 1.383, 10: 1.372, 12: 1.356, 15: 1.341, 20: 1.325, 30: 1.310}


def _t80(df: int) -> float:
    """Student's t at 0.90 (the p90 of a two-sided 80% interval) for ``df`` degrees."""
    if df <= 0:
        return 0.0
    known = [d for d in _T80 if d <= df]
    return _T80[max(known)] if df <= 30 else 1.2816


@dataclass(frozen=True, slots=True)
class Interval:
    """A projected figure: its p10, p50 and p90."""

    p10: float
    p50: float
    p90: float

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies between p10 and p90."""
        return self.p10 <= value <= self.p90

    def to_dict(self, digits: int = 6) -> dict[str, float]:
        """The three figures as plain data."""
        return {q: round(getattr(self, q), digits) for q in ("p10", "p50", "p90")}


@dataclass(frozen=True, slots=True)
class StepMeasure:
    """One step in one chunk of the pilot.

    Attributes:
        name: the step's name in the run's metrics.
        slots: its call slots (``concurrency``).
        work_s: its calls' working time (rate and outage waits left out).
        llm: whether it is an LLM step; ``chat`` whether it sends chat requests (the
            tiers apply to those), ``flex`` whether the pilot ran it on the flex tier.
        client: which client's rate limit its requests share (an id).
        requests, prompt_tokens, completion_tokens: what it sent and was answered.
        price: the step's cost of (prompt, completion) tokens on a tier, ``None``
            where the model has no price.
        requests_per_minute, tokens_per_minute: its client's limit in force.
        batch_size: on the batch tier, requests in one batch, and ``batches_at_once``.
    """

    name: str
    slots: int
    work_s: float
    llm: bool = False
    chat: bool = False
    flex: bool = False
    client: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    price: Callable[[str, int, int], float | None] | None = field(default=None, compare=False)
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    batch_size: int = 50_000
    batches_at_once: int = 1


@dataclass(frozen=True, slots=True)
class ChunkMeasure:
    """One chunk of the pilot: its source items and each step's measures."""

    items: int
    steps: Sequence[StepMeasure]


@dataclass(frozen=True, slots=True)
class TierEstimate:
    """The whole run projected on one tier.

    Attributes:
        tier: ``"online"``, ``"flex"`` or ``"batch"`` (the chat LLM steps on it).
        cost_usd: ``None`` when a model has no price.
        wall_s: the run's wall time.
        requests: requests sent to providers; ``tokens`` their prompt and completion tokens.
    """

    tier: str
    cost_usd: Interval | None
    wall_s: Interval
    requests: Interval
    tokens: Interval

    def to_dict(self) -> dict[str, Any]:
        """The projection as plain data."""
        return {
            "tier": self.tier,
            "cost_usd": self.cost_usd.to_dict() if self.cost_usd is not None else None,
            "wall_s": self.wall_s.to_dict(3),
            "requests": self.requests.to_dict(1),
            "tokens": self.tokens.to_dict(1),
        }


def project(
    chunks: Sequence[ChunkMeasure],
    total: int,
    tier: str,
    batch_turnaround: tuple[float, float, float] = BATCH_TURNAROUND_S,
) -> TierEstimate:
    """The run over ``total`` items on ``tier``, from the pilot's ``chunks``."""
    per_item = [c for c in chunks if c.items > 0]
    cost = _spread(per_item, total, lambda c: _cost(c, tier))
    requests = _spread(per_item, total, lambda c: sum(s.requests for s in c.steps if s.llm))
    tokens = _spread(
        per_item,
        total,
        lambda c: sum(s.prompt_tokens + s.completion_tokens for s in c.steps if s.llm),
    )
    if tier == "batch":
        online = _spread(per_item, total, lambda c: _items_per_s(c, "batch"), inverse=True)
        rounds = sum(_rounds(s, requests.p50 * _share(per_item, s.name)) for s in _chat(per_item))
        wall = Interval(*(online.p50 + rounds * t for t in batch_turnaround))
    else:
        wall = _spread(per_item, total, lambda c: _items_per_s(c, tier), inverse=True)
        faster, slower = _ends(per_item, tier)
        wall = Interval(max(0.0, wall.p10 - faster), wall.p50, wall.p90 + slower)
    return TierEstimate(tier, cost, wall, requests, tokens)


BURST_S = 1.0
"""A rate limit's bucket starts full: about one second of its rate (``Rate``'s default
burst) goes out at once, so a run held to a limit can end that much sooner."""


def _ends(chunks: Sequence[ChunkMeasure], tier: str) -> tuple[float, float]:
    """What a run's two ends add to its steady pace, which the chunks' spread does not
    see (a run held to a rate limit paces every chunk alike): the first second of a
    limit's burst, sooner; the last calls in flight, one call of each step in turn, later."""
    limited = any(s.requests_per_minute or s.tokens_per_minute for c in chunks for s in c.steps)
    last = []
    for chunk in chunks:
        call = 0.0
        for step in chunk.steps:
            calls = step.requests if step.llm and step.requests else chunk.items
            took = step.work_s / max(1, calls)
            if step.chat and tier == "flex" and not step.flex:
                took *= FLEX_SLOWDOWN
            call += took
        last.append(call)
    return (BURST_S if limited else 0.0), (statistics.fmean(last) if last else 0.0)


def _chat(chunks: Sequence[ChunkMeasure]) -> list[StepMeasure]:
    return [s for s in chunks[0].steps if s.chat] if chunks else []


def _share(chunks: Sequence[ChunkMeasure], name: str) -> float:
    """The share of the LLM requests that step ``name`` sent in the pilot."""
    mine = sum(s.requests for c in chunks for s in c.steps if s.name == name)
    every = sum(s.requests for c in chunks for s in c.steps if s.llm)
    return mine / every if every else 0.0


def _rounds(step: StepMeasure, requests: float) -> int:
    """Turnarounds the step's requests need: its batches, so many at once."""
    batches = math.ceil(requests / step.batch_size) if requests > 0 else 0
    return math.ceil(batches / max(1, step.batches_at_once))


def _cost(chunk: ChunkMeasure, tier: str) -> float | None:
    dollars = 0.0
    for step in chunk.steps:
        if not step.llm or step.price is None:
            continue
        on = tier if step.chat else "online"
        priced = step.price(on, step.prompt_tokens, step.completion_tokens)
        if priced is None:
            return None
        dollars += priced
    return dollars


def _items_per_s(chunk: ChunkMeasure, tier: str) -> float:
    """The slowest step's items a second at this chunk's measures (``inf``: no bound)."""
    bounds = [math.inf]
    requests: dict[int, float] = {}
    tokens: dict[int, float] = {}
    limits: dict[int, tuple[float | None, float | None]] = {}
    for step in chunk.steps:
        if tier == "batch" and step.chat:
            continue  # on the batch tier: the turnaround's rounds instead
        work = step.work_s / chunk.items
        if step.chat and tier == "flex" and not step.flex:
            work *= FLEX_SLOWDOWN
        elif step.chat and tier != "flex" and step.flex:
            work /= FLEX_SLOWDOWN
        if work > 0:
            bounds.append(step.slots / work)
        if step.llm:
            requests[step.client] = requests.get(step.client, 0.0) + step.requests / chunk.items
            used = (step.prompt_tokens + step.completion_tokens) / chunk.items
            tokens[step.client] = tokens.get(step.client, 0.0) + used
            limits[step.client] = (step.requests_per_minute, step.tokens_per_minute)
    for client, (rpm, tpm) in limits.items():
        if rpm and requests[client] > 0:
            bounds.append(rpm / 60 / requests[client])
        if tpm and tokens[client] > 0:
            bounds.append(tpm / 60 / tokens[client])
    return min(bounds)


def _spread(
    chunks: Sequence[ChunkMeasure],
    total: int,
    figure: Callable[[ChunkMeasure], float | None],
    *,
    inverse: bool = False,
) -> Any:
    """``total`` items' worth of ``figure`` (per chunk, summed over its items; with
    ``inverse`` a rate of items a second, projected as the time ``total`` items take)."""
    values = []
    for chunk in chunks:
        value = figure(chunk)
        if value is None:
            return None
        if inverse:
            values.append(0.0 if math.isinf(value) or value <= 0 else 1.0 / value)
        else:
            values.append(value / chunk.items)
    if not values:
        return Interval(0.0, 0.0, 0.0)
    weights = [c.items for c in chunks]
    mean = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    sampled = sum(weights)
    if sampled >= total:
        spread = 0.0  # the pilot ran every item: nothing is left to guess
    half = _t80(len(values) - 1) * spread
    return Interval(max(0.0, (mean - half) * total), mean * total, (mean + half) * total)
