"""A circuit breaker: fail fast while a provider is down, and probe it back.

States, as in the usual pattern:

- **closed**: calls go through; ``failures`` failures in a row that look like
  an outage (what :func:`~headrace.limits.retry.is_retryable` accepts, less
  429s, which mean "later", not "down") open it.
- **open**: every call fails at once with :class:`CircuitOpen` (not retried:
  the point is not to wait on a provider that is down) for ``reset`` seconds.
- **half-open**: one call goes through as a probe; success closes the circuit,
  failure opens it for another ``reset``. Other calls keep failing fast.

One ``Circuit`` may guard several steps that call one provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from ..durations import to_seconds
from ..errors import HeadraceError, PipelineError
from .retry import is_retryable, is_throttle

__all__ = ["Circuit", "CircuitOpen"]

State = Literal["closed", "open", "half-open"]


class CircuitOpen(HeadraceError):
    """A call was refused without being made: the step's circuit breaker is open."""


class Circuit:
    """A circuit breaker for the steps that carry it (see the module's notes).

    Args:
        failures: outage-like failures in a row that open the circuit.
        reset: how long it stays open before a probe (seconds or ``"30s"``).
        counts: which failures count (default: retryable ones that are not 429s).

    Raises:
        PipelineError: an invalid value.
    """

    def __init__(
        self,
        failures: int = 5,
        reset: float | str = 30.0,
        *,
        counts: Callable[[BaseException], bool] | None = None,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise PipelineError(f"Circuit failures must be a positive integer, got {failures!r}")
        self.failures = failures
        self.reset_s = to_seconds(reset, option="reset")
        self.counts = counts or (lambda error: is_retryable(error) and not is_throttle(error))
        self.clock = _clock
        self.state: State = "closed"
        self.in_a_row = 0
        self.opened_at = 0.0
        self.probing = False
        self.opened = 0
        self.refused = 0

    def allow(self) -> bool:
        """Whether a call may go now (taking the probe's turn when half-open)."""
        if self.state == "open" and self.clock() - self.opened_at >= self.reset_s:
            self.state = "half-open"
        if self.state == "closed":
            return True
        if self.state == "half-open" and not self.probing:
            self.probing = True
            return True
        self.refused += 1
        return False

    def succeeded(self) -> None:
        """A call went through: close the circuit."""
        self.state = "closed"
        self.in_a_row = 0
        self.probing = False

    def failed(self, error: BaseException) -> None:
        """A call failed with ``error``: count it, and open the circuit if it is time."""
        if self.probing:
            self.probing = False
            if self.counts(error):
                self._open()
            else:  # the provider answered: it is up, whatever the answer
                self.succeeded()
            return
        if not self.counts(error):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.state == "closed" and self.in_a_row >= self.failures:
            self._open()

    def _open(self) -> None:
        self.state = "open"
        self.opened_at = self.clock()
        self.opened += 1
        self.in_a_row = 0

    def describe(self) -> dict[str, float | int]:
        """The settings as plain data."""
        return {"failures": self.failures, "reset_s": self.reset_s}

    def __repr__(self) -> str:
        return f"Circuit(failures={self.failures}, reset={self.reset_s}s, state={self.state!r})"
