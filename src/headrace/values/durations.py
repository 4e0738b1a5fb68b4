"""Durations given as numbers of seconds or as strings ("10ms", "2.5s", "5m", "7d").

Parsed once, where an option is built; the engine only ever sees seconds.
"""

from __future__ import annotations

import re

from ..errors import PipelineError

__all__ = ["format_compound", "parse_compound", "to_seconds"]

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


_COMPOUND = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|s|m|h|d)")


def parse_compound(text: str) -> float | None:
    """Seconds in a Go-style duration as providers send them ("6m0s", "1.5s", "20ms").

    Returns ``None`` for anything else (an empty or malformed value).
    """
    text = text.strip()
    parts = _COMPOUND.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def format_compound(seconds: float) -> str:
    """``seconds`` as providers write a reset time: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1e3)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest, 3):g}s"
