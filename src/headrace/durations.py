"""Durations given as numbers of seconds or as strings ("10ms", "2.5s", "5m", "7d").

Parsed once, where an option is built; the engine only ever sees seconds.
"""

from __future__ import annotations

import re

from .errors import PipelineError

__all__ = ["to_seconds"]

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h|d)\s*$")


def to_seconds(value: float | str, *, option: str) -> float:
    """Return ``value`` in seconds; ``option`` names the parameter in the error.

    Raises:
        PipelineError: the value is negative, not a number, or an unknown unit.
    """
    if isinstance(value, bool):
        raise PipelineError(f"{option} must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise PipelineError(
                f"{option}={value!r} is not a duration: use seconds (0.5) or a number with "
                f"a unit, one of {', '.join(_UNITS)} (e.g. '10ms', '7d')"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise PipelineError(f"{option} must be a duration, got {type(value).__name__}")
    if seconds < 0:
        raise PipelineError(f"{option} must not be negative, got {value!r}")
    return seconds
