"""The vocabulary every layer shares, importing nothing else of headrace.

``FILTERED`` (what a step returns to drop an item), ``Handler`` (a bound
step: the coroutine function that carries one item through it in one run), and
``Place`` and ``Problem`` (where a recipe's error is, as a ``RecipeError`` holds it).
Declarations, the engine, caches and sinks all speak of these; keeping them
here keeps each of those from importing the others for one word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["FILTERED", "Handler", "Place", "Problem"]

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


@dataclass(frozen=True, slots=True)
class Place:
    """A position in a file: 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        # line 0 marks a value given on the command line (--set), not in a file
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a recipe: where, which field, and what."""

    place: Place
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.place}: {where}{self.message}"
