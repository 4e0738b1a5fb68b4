"""A step's time limits: per call, and per item across all its attempts (a fallback
step, which names a step, is a declaration: :class:`~headrace.pipeline.options.Fallback`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PipelineError
from ..values.durations import to_seconds

__all__ = ["Timeout"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """Time limits of a step: per call, and per item across all its attempts.

    ``hr.step(timeout=2)`` is ``hr.Timeout(attempt=2)``. A ``total`` bounds an
    item's whole time in the step, retries and their waits included; when it
    runs out the item fails with :class:`~headrace.errors.StepTimeout`, not retried.

    Args:
        attempt: the most one call may take (seconds or ``"500ms"``).
        total: the most an item may spend in the step, all attempts included.

    Raises:
        PipelineError: neither limit, or one that is not positive.
    """

    attempt: float | str | None = None
    total: float | str | None = None
    attempt_s: float | None = field(init=False)
    total_s: float | None = field(init=False)

    def __post_init__(self) -> None:
        if self.attempt is None and self.total is None:
            raise PipelineError("Timeout needs attempt=, total= or both")
        for name, option in (("attempt", "timeout"), ("total", "total timeout")):
            value = getattr(self, name)
            seconds = None if value is None else to_seconds(value, option=option)
            if seconds == 0:
                raise PipelineError(f"{option} must be greater than zero")
            object.__setattr__(self, f"{name}_s", seconds)
