"""The vocabulary every layer shares, importing nothing else of headrace.

``FILTERED`` (what a step returns to drop an item) and ``Handler`` (a bound
step: the coroutine function that carries one item through it in one run).
Declarations, the engine, caches and sinks all speak of these; keeping them
here keeps each of those from importing the others for one word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["FILTERED", "Handler"]

Handler = Callable[[Any], Awaitable[Any]]
"""Carries one item through a bound step; returns the output or ``FILTERED``."""


class _Filtered:
    """The marker a step returns for an item it drops; see :data:`FILTERED`."""

    _instance: _Filtered | None = None

    def __new__(cls) -> _Filtered:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "headrace.FILTERED"

    def __reduce__(self) -> str:
        return "FILTERED"


FILTERED: Final = _Filtered()
"""Return this from a step to drop the item: it is counted as *filtered*, not lost."""
