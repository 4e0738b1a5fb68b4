"""Retrying a failed call: which failures, how long to wait, and how many retries a run may spend.

- **What is retried** by default: timeouts, connection errors, throttling
  (:class:`~headrace.errors.Throttled`, or an HTTP 429 from a client's
  exception) and server errors (5xx). A client's exception is recognised
  without wrapping by a ``status``/``status_code`` attribute (itself or on its
  ``response``): aiohttp, httpx, requests and the ``openai`` SDK all carry one.
- **How long to wait**: exponential backoff with *full jitter* (a uniform draw
  between 0 and ``backoff * 2**(attempt-1)``, capped by ``max_delay``), so
  callers that failed together do not retry together. A ``Retry-After`` the
  provider sent is a floor: the wait is that plus the jittered backoff, which
  spreads the waiters over the window after it instead of releasing them at once.
- **A retry budget** slows retries down, it never fails an item: each first
  attempt earns ``budget`` retries (0.2: one retry per five calls) on top of a
  small reserve, the budget regains ``budget_refill`` retries a second on its
  own, and a retry spends one. A retry the budget cannot pay for waits until it
  can (the debt divided by the refill rate, on top of its backoff), so a burst of
  failures spreads its retries out instead of multiplying the load on a
  struggling provider. An item fails only when its attempts are spent; judging a
  provider *down* is the circuit breaker's job (:class:`~headrace.Circuit`).
  Throttling does not spend the budget: a 429 means "come back later", so a
  throttled call always waits and retries (up to ``attempts``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError, StepTimeout, Throttled
from ..values.checks import positive_int, positive_number
from ..values.durations import to_seconds

if TYPE_CHECKING:
    from ..metrics import StepMetrics

__all__ = [
    "Retrier",
    "Retry",
    "RetryBudget",
    "headers_of",
    "is_retryable",
    "is_throttle",
    "retry_after_s",
    "status_of",
]

_RETRYABLE_NAMES = frozenset(
    {
        # httpx, aiohttp, the openai SDK and requests: timeouts and broken connections
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ClientPayloadError",
        "APIConnectionError",
        "APITimeoutError",
        "ConnectionError",
        "Timeout",
    }
)


def status_of(error: BaseException) -> int | None:
    """The HTTP status an exception carries (itself or on its ``response``), if any."""
    for holder in (error, getattr(error, "response", None)):
        for name in ("status_code", "status"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
                return value
    return None


def headers_of(error: BaseException) -> Mapping[str, str]:
    """The response headers an exception carries (itself or on its ``response``), if any."""
    headers = getattr(error, "headers", None)
    if headers is None:
        headers = getattr(getattr(error, "response", None), "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def retry_after_s(error: BaseException) -> float | None:
    """How long the provider asked to wait: ``Throttled.retry_after``, else the
    ``retry-after-ms`` or ``Retry-After`` (seconds) header; ``None`` if it did not say."""
    if isinstance(error, Throttled) and error.retry_after is not None:
        return error.retry_after
    headers = {str(k).lower(): v for k, v in headers_of(error).items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except (TypeError, ValueError):
            continue  # an HTTP date: rare from APIs; fall back to the backoff
        if seconds >= 0:
            return seconds
    return None


def is_throttle(error: BaseException) -> bool:
    """Whether ``error`` is the provider saying "too many requests" (a 429)."""
    return isinstance(error, Throttled) or status_of(error) == 429


def is_retryable(error: BaseException) -> bool:
    """The default predicate: timeouts, connection errors, 429 and 5xx."""
    if isinstance(error, Throttled | StepTimeout | TimeoutError | ConnectionError):
        return True
    status = status_of(error)
    if status is not None:
        return status == 429 or status >= 500
    return any(kind.__name__ in _RETRYABLE_NAMES for kind in type(error).__mro__)


class RetryBudget:
    """Retries a run may spend without waiting: ``ratio`` per first attempt, plus
    ``reserve``, regaining ``refill_per_s`` a second; beyond that a retry waits.

    Args:
        ratio: retries earned by each first attempt (0.2: one retry per five calls).
        refill_per_s: retries regained a second on their own (up to ``reserve``),
            so retries never wait forever when no new call earns any.
        reserve: retries available before any call has earned one.
        clock: seconds, for tests (default ``time.monotonic``).
    """

    def __init__(
        self,
        ratio: float,
        refill_per_s: float = 10.0,
        reserve: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.refill_per_s = refill_per_s
        self.reserve = float(reserve)
        self.balance = float(reserve)
        self.clock = clock
        self.updated = clock()
        self.spent = 0
        self.delayed = 0

    def earn(self) -> None:
        """A first attempt was made."""
        self.balance += self.ratio

    def take(self) -> float:
        """Take one retry; return how long it must wait for the budget to pay for it
        (0 while the budget has one)."""
        now = self.clock()
        if self.balance < self.reserve:
            regained = (now - self.updated) * self.refill_per_s
            self.balance = min(self.reserve, self.balance + regained)
        self.updated = now
        self.balance -= 1.0
        self.spent += 1
        if self.balance >= 0:
            return 0.0
        self.delayed += 1
        return -self.balance / self.refill_per_s


@dataclass(frozen=True, slots=True)
class Retry:
    """How a step retries a failed call (see the module's notes).

    Args:
        attempts: calls in all, the first one included (``attempts=1``: no retry).
        backoff: the base of the exponential backoff (seconds or ``"500ms"``).
        max_delay: the longest backoff draw (a ``Retry-After`` may ask for more).
        retry_on: a predicate of the exception; default :func:`is_retryable`.
        budget: retries earned per first attempt, across the step's items
            (``None``: no budget, every retry goes after its backoff alone).
        budget_refill: retries a second the budget regains on its own; a retry
            beyond the budget waits for it, so a run's retries never go faster
            than the budget allows, and never stop.

    Raises:
        PipelineError: an invalid value.
    """

    attempts: int = 3
    backoff: float | str = 0.5
    max_delay: float | str = 30.0
    retry_on: Callable[[BaseException], bool] = field(default=is_retryable)
    budget: float | None = 0.2
    budget_refill: float = 10.0
    backoff_s: float = field(init=False)
    max_delay_s: float = field(init=False)

    def __post_init__(self) -> None:
        positive_int(self.attempts, "Retry attempts")
        object.__setattr__(self, "backoff_s", to_seconds(self.backoff, option="backoff"))
        object.__setattr__(self, "max_delay_s", to_seconds(self.max_delay, option="max_delay"))
        if self.budget is not None and not self.budget >= 0:
            raise PipelineError(f"Retry budget must be >= 0 or None, got {self.budget!r}")
        positive_number(self.budget_refill, "Retry budget_refill")
        if not callable(self.retry_on):
            raise PipelineError("Retry retry_on must be a function of the exception")

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
        ceiling = min(self.max_delay_s, self.backoff_s * 2 ** (attempt - 1))
        jitter = rng.uniform(0.0, ceiling)
        floor = retry_after_s(error)
        return jitter if floor is None else floor + jitter

    def new_budget(self) -> RetryBudget | None:
        """A fresh budget for one step in one run."""
        return None if self.budget is None else RetryBudget(self.budget, self.budget_refill)

    def describe(self) -> dict[str, Any]:
        """The policy as plain data."""
        return {
            "attempts": self.attempts,
            "backoff_s": self.backoff_s,
            "max_delay_s": self.max_delay_s,
            "budget": self.budget,
            "budget_refill": self.budget_refill,
        }


class Retrier:
    """One :class:`Retry` at work in one run: its budget, its random draws, its verdicts.

    The step's call path and the LLM client both loop as ``first_attempt()``,
    then after each failure ``retry_delay()``: ``None`` (give up) or the seconds
    to sleep before trying again.
    """

    __slots__ = ("budget", "retry", "rng")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.budget = retry.new_budget()
        self.rng = random.Random()

    def first_attempt(self) -> None:
        """A new call starts: it earns its share of the budget."""
        if self.budget is not None:
            self.budget.earn()

    def gave_up(self, attempt: int, cause: BaseException) -> str:
        """Why the item's retries stopped after ``attempt`` (for its dead letter)."""
        if not self.retry.retry_on(cause):
            return f"not retried: {type(cause).__name__} is not a retryable failure"
        return f"retries stopped: all {attempt} attempts failed"

    def backoff(self, attempt: int, cause: BaseException) -> float | None:
        """The backoff after failed attempt ``attempt`` whatever the attempts left
        (``None`` when ``cause`` is not retried at all)."""
        if not self.retry.retry_on(cause):
            return None
        return self.retry.delay(attempt, cause, self.rng)

    def retry_delay(self, attempt: int, cause: BaseException, metrics: StepMetrics) -> float | None:
        """After failed attempt ``attempt``: ``None`` when it is not retried (out of
        attempts, or not retryable), else the seconds to wait first — the backoff,
        plus the wait for the budget (counted as ``retries_delayed``). A 429 never
        spends the budget (it means "later", not "down")."""
        if attempt >= self.retry.attempts or not self.retry.retry_on(cause):
            return None
        waited = 0.0
        if not is_throttle(cause) and self.budget is not None:
            waited = self.budget.take()
            if waited:
                metrics.retries_delayed += 1
        metrics.retries += 1
        return self.retry.delay(attempt, cause, self.rng) + waited
