"""A run's metrics read back as plain data (:meth:`RunMetrics.to_dict`'s form), typed.

The bottleneck line and the verdicts read a run through these views, so they say
the same of a run that just ended and of one read back from its store, where
the data is untrusted: a missing or mistyped value reads as zero (or empty),
never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .counters import outage_line

__all__ = ["RunView", "StepView", "number", "outage_in"]


def number(data: Any, *path: str) -> float:
    """The number at ``path`` inside ``data`` (nested mappings); 0.0 when absent or not one."""
    for name in path:
        if not isinstance(data, Mapping):
            return 0.0
        data = data.get(name)
    if isinstance(data, bool) or not isinstance(data, int | float):
        return 0.0
    return float(data) if data == data else 0.0  # NaN reads as 0


def _mapping(data: Any, name: str) -> Mapping[str, Any] | None:
    value = data.get(name) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else None


class StepView:
    """One step's data (an entry of ``to_dict()["steps"]``)."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    @property
    def name(self) -> str:
        """The step's name."""
        return str(self.data.get("name", "?"))

    def number(self, *path: str) -> float:
        """The number at ``path`` in the step's data (0 when absent)."""
        return number(self.data, *path)

    def part(self, name: str) -> Mapping[str, Any] | None:
        """A nested part (``rate``, ``llm``, ``cache``, ...) or ``None``."""
        return _mapping(self.data, name)

    def text(self, name: str) -> str:
        """A text field ('' when absent)."""
        value = self.data.get(name)
        return value if isinstance(value, str) else ""

    @property
    def slots(self) -> int:
        """Calls the step may have in flight."""
        return int(self.number("slots"))

    @property
    def calls(self) -> int:
        """Calls made."""
        return int(self.number("calls"))

    def requests(self) -> float:
        """Requests sent: an LLM step's requests, else its calls."""
        return self.number("llm", "requests") if self.part("llm") else self.number("calls")

    def tokens(self) -> float:
        """An LLM step's tokens, prompt and completion."""
        return self.number("llm", "prompt_tokens") + self.number("llm", "completion_tokens")

    def counts(self, name: str, *, within: str | None = None) -> dict[str, int]:
        """Counts by name (``batch_sizes``, ``flushes``; ``hits`` within ``cache``),
        leaving out what is not a count."""
        part = _mapping(self.part(within), name) if within else self.part(name)
        return {str(k): int(n) for k, n in (part or {}).items() if number(n) == n}

    def sizes(self, name: str) -> dict[int, int]:
        """A histogram of counts by size (``batch_sizes``), sizes read as integers."""
        return {int(k): n for k, n in self.counts(name).items() if k.isdigit()}

    def utilisation(self, wall_s: float) -> float:
        """The share of the run its call slots were working: of ``slot_s`` (a run on a
        cluster: its shards' slot-seconds, see :mod:`headrace.report.shards`) when the
        data has it, else of ``wall_s`` times its slots."""
        slot_s = self.number("slot_s")
        if slot_s > 0:
            return min(1.0, self.number("busy_s") / slot_s)
        if wall_s <= 0 or not self.slots:
            return 0.0
        return self.number("busy_s") / (wall_s * self.slots)


class RunView:
    """A whole run's data (``RunMetrics.to_dict()``)."""

    __slots__ = ("data", "steps")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        steps = data.get("steps") if isinstance(data, Mapping) else None
        self.steps = [StepView(s) for s in steps or () if isinstance(s, Mapping)]

    @property
    def wall_s(self) -> float:
        """The run's wall time."""
        return number(self.data, "wall_s")

    def number(self, *path: str) -> float:
        """The number at ``path`` in the run's data (0 when absent)."""
        return number(self.data, *path)


def outage_in(data: Mapping[str, Any]) -> str:
    """The outage line (:func:`~headrace.metrics.outage_line`) of the first step whose
    circuit is not closed in a run's data (a row of its time series), or empty."""
    for step in RunView(data).steps:
        circuit = step.part("circuit")
        state = circuit.get("state") if circuit is not None else None
        if isinstance(state, str) and state != "closed":
            return outage_line(
                step.name,
                state,
                step.number("circuit", "down_s"),
                step.number("circuit", "max_outage_s"),
                str((circuit or {}).get("last_error", "")),
            )
    return ""
