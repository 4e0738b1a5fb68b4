"""What the run's metrics read of the parts that keep their own counters, as protocols:
a rate limit and a circuit at work (in ``limits/``), an LLM step's counters (in
``llm/``). Declared here, so the metrics import none of those parts."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CircuitCounters", "LLMCounters", "RateCounters"]


class RateCounters(Protocol):
    """What the run's metrics read of a rate limit at work in a run
    (:class:`~headrace.limits.rate_state.RateState`, in the limits beside this module)."""

    @property
    def outage_share(self) -> float:
        """The share of the limit paced locally while a shared limit's Redis is down."""

    def limit(self) -> dict[str, Any]:
        """The limit in force, where it came from, and its outages."""


class CircuitCounters(Protocol):
    """What the run's metrics read of a circuit breaker at work in a run
    (:class:`~headrace.limits.circuit.CircuitState`)."""

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""

    @property
    def when_open(self) -> str:
        """``"wait"`` (calls are held) or ``"fail"`` (calls are refused)."""

    @property
    def opened(self) -> int:
        """How many times it opened."""

    @property
    def refused(self) -> int:
        """Calls refused while open."""

    @property
    def held(self) -> int:
        """Calls held while open."""

    @property
    def max_outage_s(self) -> float:
        """How long an outage may last before the run stops."""

    @property
    def last_error(self) -> str:
        """The error that opened it last."""

    def down_s(self) -> float:
        """How long it has been open in the current outage (0 when closed)."""


class LLMCounters(Protocol):
    """What the run's metrics read of an LLM step's counters
    (:class:`~headrace.llm.stats.LLMStats`, kept by the LLM layer above this one)."""

    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        """The counters as plain data (the summary's, the report's)."""

    def summary(self) -> str:
        """One line for the run summary."""
