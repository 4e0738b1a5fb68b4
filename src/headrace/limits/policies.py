"""The smaller policies a step can carry: a time limit per item, and a fallback step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..durations import to_seconds
from ..errors import PipelineError

if TYPE_CHECKING:
    from ..pipeline.step import Step

__all__ = ["Fallback", "Timeout"]


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


@dataclass(frozen=True, slots=True)
class Fallback:
    """Run another step on the item when this one has failed (its attempts spent).

    The fallback's output takes the place of the step's. If the fallback fails
    too, the item's dead letter is the fallback's error, with a note naming the
    first failure.

    Args:
        step: the step to run instead (made with ``@hr.step``).
        when: which failures fall back, a predicate of the exception (default: all).
    """

    step: Step[Any, Any]
    when: Callable[[BaseException], bool] = field(default=lambda error: True)

    def __post_init__(self) -> None:
        if not _is_step(self.step):
            raise PipelineError(f"Fallback takes a step (made with @hr.step), got {self.step!r}")
        if not callable(self.when):
            raise PipelineError("Fallback when= must be a function of the exception")


def _is_step(value: Any) -> bool:
    """Whether ``value`` is a :class:`~headrace.pipeline.step.Step`, told by its class's bases by
    name: the limits sit below the declarations and do not import them."""
    return any(
        k.__name__ == "Step" and k.__module__ == "headrace.pipeline.step"
        for k in type(value).__mro__
    )
