"""A Python callable as the sink of a durable run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .records import Recovered

__all__ = ["CallbackSink"]


class CallbackSink:
    """Records outcomes for a callable sink, which the lanes call with each output.

    A callable cannot take back what it was given, so across a kill it is
    *at least once*: outputs handed to it since the last commit (at most
    ``flush_items`` items or ``flush_interval_s`` seconds of work) are handed
    again on resume. Every other item is handed exactly once.
    """

    flush_items = 1000
    flush_interval_s = 0.2
    keeps_journal = False

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def describe(self) -> dict[str, Any]:
        """The callable's qualified name, stored with the run."""
        name = getattr(self.function, "__qualname__", type(self.function).__qualname__)
        module = getattr(self.function, "__module__", None)
        return {"kind": "callback", "function": f"{module}:{name}"}

    def encode(self, key: str, value: Any) -> None:
        """Nothing to keep: the callable has the output already."""
        return None

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """Nothing to undo, and nothing of someone else's to overwrite."""
        return None

    def set_aside(self) -> str | None:
        """Outputs already handed to the callable cannot be taken back: nothing moves."""
        return None

    def write(self, records: list[Any], journal: bytes | None = None) -> dict[str, Any]:
        """Nothing to write."""
        return {}

    def close(self) -> None:
        """Nothing to release."""
