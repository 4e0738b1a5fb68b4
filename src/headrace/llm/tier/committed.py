"""The batch tier's spending against the run's :class:`~headrace.limits.budget.Budget`:
a batch's upper bound is committed before it is submitted, and a batch that would
pass the budget is not submitted (its requests are left for a resume).

The bound of a request is its prompt tokens plus its completion ceiling
(``max_tokens``, or the mean completion of the model so far when the step sets
none), at the batch price. When the batch ends, its reservation is replaced by what
its answers really cost (every answered request, whether or not an item still asks
for it: the provider bills them all). A batch resumed from an earlier session was
committed there: only what it really cost is counted.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...errors import BudgetExhausted
from ...limits.budget import Spend
from ..replies import Reply
from ..tokens import prompt_tokens
from .answers import outcome

if TYPE_CHECKING:
    from ...limits.budget import RunSpend
    from ..stats import Costs

__all__ = ["Committed"]


async def _done(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


class Committed:
    """What one step's batches hold of the run's budget (nothing without a budget)."""

    def __init__(self, spend: RunSpend | None, costs: Costs, model: str) -> None:
        self.spend = spend
        self.costs = costs
        self.model = model  # the step's: every request of its batches names it
        self.held: dict[str, tuple[int, float]] = {}  # intent id -> its reservation

    async def take(self, intent_id: str, requests: list[tuple[str, dict[str, Any]]]) -> int:
        """Commit the bound of as many of ``requests`` as the budget allows, in order;
        how many that is.

        Raises:
            BudgetExhausted: not even the first fits.
        """
        spend = self.spend
        if spend is None:
            return len(requests)
        bounds = [
            self.costs.expected(str(body.get("model", "")), prompt_tokens(body), body)
            for _, body in requests
        ]
        count = len(bounds)
        if isinstance(spend, Spend):  # in this process: the batch is cut to what fits
            budget = spend.budget
            usd_left = (budget.usd or 0.0) - spend.usd - spend.reserved_usd
            tokens_left = (budget.tokens or 0) - spend.tokens - spend.reserved_tokens
            usd = tokens = 0.0
            for index, (more_tokens, more_usd) in enumerate(bounds):
                usd, tokens = usd + more_usd, tokens + more_tokens
                if (budget.usd is not None and usd > usd_left) or (
                    budget.tokens is not None and tokens > tokens_left
                ):
                    count = index
                    break
            if count == 0:
                raise BudgetExhausted(
                    "the budget cannot commit another batch: "
                    + (f"${usd_left:.4f} left" if budget.usd is not None else "")
                    + (f"{tokens_left:,} tokens left" if budget.usd is None else "")
                )
        reserved = (sum(t for t, _ in bounds[:count]), sum(u for _, u in bounds[:count]))
        await _done(spend.reserve(*reserved))  # refused when spent and held reach the budget
        self.held[intent_id] = reserved
        return count

    async def settle(self, intent_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """A batch ended: its reservation becomes what its answers cost."""
        if self.spend is None:
            return
        tokens, usd = 0, 0.0
        price = self.costs.price_of(self.model, "batch")
        for row in rows:
            answer = outcome(row)
            if isinstance(answer, Reply):
                prompt, completion = answer.usage
                tokens += prompt + completion
                usd += price.cost(prompt, completion) if price is not None else 0.0
        await _done(self.spend.settle(*self.held.pop(intent_id, (0, 0.0)), tokens, usd))
