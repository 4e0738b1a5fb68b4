"""What the run's metrics read of the parts that keep their own state: frozen snapshots.

A rate limit, a circuit breaker and a step's call slots (all in ``limits/``) are live
objects the gate changes on every call. The metrics never read their attributes: they
hold them as :class:`Readable` and take one :meth:`~Readable.statistics` snapshot
whenever they are shown (as anyio's primitives hand out their statistics), so one line
of a summary never mixes two moments, and this package imports none of those parts.
An LLM step's counters (kept by ``llm/``) are counters the metrics add up and merge,
read through :class:`LLMCounters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "CircuitReading",
    "LLMCounters",
    "RateReading",
    "Readable",
    "SlotsReading",
]

Reading = TypeVar("Reading", covariant=True)


class Readable(Protocol[Reading]):
    """A live part of a run that hands out frozen snapshots of its state."""

    def statistics(self) -> Reading:
        """A snapshot of the state now."""


@dataclass(frozen=True, slots=True)
class SlotsReading:
    """A snapshot of a step's call slots
    (:class:`~headrace.limits.concurrency.ConcurrencyLimit`).

    Attributes:
        limit: how many callers may hold a slot at once.
        in_use: slots held now.
        waiting: callers waiting for a slot now.
        peak: the most slots ever held at once.
        admitted: slots granted so far.
        waited: of those, how many had to wait for a slot.
    """

    limit: int
    in_use: int
    waiting: int
    peak: int
    admitted: int
    waited: int


@dataclass(frozen=True, slots=True)
class RateReading:
    """A snapshot of a rate limit at work in a run
    (:class:`~headrace.limits.rate_state.RateState`).

    Attributes:
        requests_per_minute: the request limit in force (``None``: none).
        tokens_per_minute: the token limit in force (``None``: none).
        source: where the limit came from (``"given"``, a provider's headers, ...).
        redis_outages: for a limit shared through Redis, how many times Redis went
            away during the run; ``None`` for a limit of this process alone.
        outage_share: the share of the limit paced locally while Redis is down.
    """

    requests_per_minute: float | None
    tokens_per_minute: float | None
    source: str
    redis_outages: int | None
    outage_share: float

    def to_dict(self) -> dict[str, Any]:
        """The limit as the summary's and the report's plain data."""
        data: dict[str, Any] = {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "source": self.source,
        }
        if self.redis_outages is not None:
            data["redis_outages"] = self.redis_outages
        return data


@dataclass(frozen=True, slots=True)
class CircuitReading:
    """A snapshot of a circuit breaker at work in a run
    (:class:`~headrace.limits.circuit.CircuitState`).

    Attributes:
        state: ``"closed"``, ``"open"`` or ``"half-open"``.
        when_open: ``"wait"`` (calls are held) or ``"fail"`` (calls are refused).
        opened: how many times it opened.
        refused: calls refused while open.
        held: calls held while open.
        down_s: how long it has been open in the current outage (0 when closed).
        max_outage_s: how long an outage may last before the run stops.
        last_error: the error that opened it last.
    """

    state: str
    when_open: str
    opened: int
    refused: int
    held: int
    down_s: float
    max_outage_s: float
    last_error: str


class LLMCounters(Protocol):
    """What the run's metrics read of an LLM step's counters
    (:class:`~headrace.llm.stats.LLMStats`, kept by the LLM layer above this one)."""

    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        """The counters as plain data (the summary's, the report's)."""

    def summary(self) -> str:
        """One line for the run summary."""
