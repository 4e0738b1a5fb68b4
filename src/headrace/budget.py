"""A run's spending limit: US dollars and tokens, checked before every LLM call.

A call reserves what it is expected to cost before it is sent and settles the
real cost from the provider's ``usage`` afterwards. Once what has been spent
plus what is reserved by calls in flight reaches a limit, no further call is
sent: the item that wanted it is left unfinished (:class:`~headrace.errors.BudgetExhausted`),
the run stops reading its source, lets the calls in flight finish, and ends
cleanly. A durable run is then resumed like any interrupted run; the resumed
run has the budget it is given, not what was left of the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BudgetExhausted, PipelineError, RunStopped, StepFailed, positive_number

__all__ = ["Budget", "Spend", "run_stopped"]


@dataclass(frozen=True, slots=True)
class Budget:
    """The most one run may spend on LLM calls: ``hr.run(..., budget=hr.Budget(usd=5))``.

    Args:
        usd: US dollars, priced by each model's :class:`~headrace.llm.prices.Price`.
        tokens: prompt plus completion tokens, over all models.

    Raises:
        PipelineError: neither limit, or one that is not positive.
    """

    usd: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise PipelineError("Budget needs usd=, tokens= or both")
        for name in ("usd", "tokens"):
            value = getattr(self, name)
            if value is not None:
                positive_number(value, f"Budget {name}")


class Spend:
    """What one run has spent against its :class:`Budget`, and what calls in flight hold."""

    __slots__ = ("budget", "reserved_tokens", "reserved_usd", "tokens", "usd")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usd = 0.0
        self.tokens = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0

    def reserve(self, tokens: int, usd: float) -> None:
        """Hold a call's expected cost; refuse it once the budget is reached.

        Raises:
            BudgetExhausted: spent plus reserved has reached a limit.
        """
        budget = self.budget
        if budget.usd is not None and self.usd + self.reserved_usd >= budget.usd:
            self._stop(f"the budget of ${budget.usd:g} is spent (${self.usd:.4f} so far)")
        if budget.tokens is not None and self.tokens + self.reserved_tokens >= budget.tokens:
            self._stop(f"the budget of {budget.tokens:,} tokens is spent ({self.tokens:,} so far)")
        self.reserved_tokens += tokens
        self.reserved_usd += usd

    def settle(self, reserved_tokens: int, reserved_usd: float, tokens: int, usd: float) -> None:
        """A call ended: drop its reservation and add what it really cost."""
        self.reserved_tokens -= reserved_tokens
        self.reserved_usd -= reserved_usd
        self.tokens += tokens
        self.usd += usd

    def _stop(self, reason: str) -> None:
        raise BudgetExhausted(reason)


def run_stopped(failure: BaseException) -> RunStopped | None:
    """The reason, if any, that a failure is the run's and not the item's: a call refused
    by the run's budget, a provider down past its circuit's ``max_outage``."""
    error: BaseException | None = failure
    for _ in range(16):  # compositions wrap failures a few levels deep at most
        if error is None:
            return None
        if isinstance(error, RunStopped):
            return error
        error = error.cause if isinstance(error, StepFailed) else error.__cause__
    return None
