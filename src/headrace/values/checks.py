"""Checks of the values an option is given, with the one wording every option uses:
positive numbers, and option names with the nearest one suggested for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import PipelineError

__all__ = ["check_options", "nearest", "positive_int", "positive_number"]


def nearest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_options(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Refuse option names not in ``known``, suggesting the nearest one.

    Raises:
        PipelineError: ``where: unknown option 'concurency' (did you mean ...?)``.
    """
    options = sorted(known)
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise PipelineError(
            f"{where}: unknown option {unknown[0]!r}{nearest(unknown[0], options)}; "
            f"options are {', '.join(options)}"
        )


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an ``int`` of 1 or more (not a ``bool``).

    Raises:
        PipelineError: ``{name} must be a positive integer, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{name} must be a positive integer, got {value!r}")
    return value


def positive_number(value: object, name: str) -> float:
    """``value`` if it is a number above 0 (not a ``bool``).

    Raises:
        PipelineError: ``{name} must be a positive number, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PipelineError(f"{name} must be a positive number, got {value!r}")
    return float(value)
