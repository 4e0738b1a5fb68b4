"""The flex tier at work in a run: a step's chat requests sent with
``service_tier="flex"`` through the client's one connection (its rate limit, circuit,
budget and retries), a capacity refusal waited out and sent again, and, after
:attr:`FlexTier.refusals <headrace.llm.tier.flex.FlexTier.refusals>` of them, sent
online or failed (``fallback``).

A refusal passes the gate as an error that is neither a 429 nor an outage (see
:class:`~headrace.errors.CapacityRefused`): the rate limit keeps what it learned,
the circuit stays closed, and the budget's hold is released unspent.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from ...errors import CapacityRefused
from ..stats import LLMStats, llm_stats
from .flex import MAX_BACKOFF_S, FlexTier

if TYPE_CHECKING:
    from ...metrics import StepMetrics
    from ..connection import Connection
    from ..replies import Reply

__all__ = ["FlexConnection"]


class FlexConnection:
    """A step's chat requests on the flex tier, over the client's ``online`` connection.

    Args:
        online: the client's connection in the run (shared with its other steps).
        tier: the step's flex settings.
        rng: the jitter of the waits between refusals (seeded in tests).
    """

    def __init__(
        self, online: Connection, tier: FlexTier, rng: random.Random | None = None
    ) -> None:
        self.online = online
        self.tier = tier
        self.rng = rng or random.Random()

    async def chat(
        self, body: dict[str, Any], metrics: StepMetrics | None = None, *, stream: bool = False
    ) -> Reply:
        """Send ``body`` on the flex tier, waiting out capacity refusals; then online, or
        :class:`~headrace.errors.CapacityRefused`, as ``fallback`` says.

        Raises:
            CapacityRefused: refused ``refusals`` times, with ``fallback=None``.
        """
        tier = self.tier
        flex = {**body, "service_tier": "flex"}
        wait = tier.backoff_s
        refused: CapacityRefused | None = None
        for refusal in range(tier.refusals):
            try:
                return await self.online.chat(flex, metrics, stream=stream, timeout=tier.timeout_s)
            except CapacityRefused as error:
                refused = error
                _stats(metrics).flex_refusals += 1
            if refusal + 1 < tier.refusals:
                await asyncio.sleep(wait * self.rng.uniform(0.5, 1.0))
                wait = min(wait * 2, MAX_BACKOFF_S)
        assert refused is not None
        if tier.fallback == "online":
            _stats(metrics).flex_fallbacks += 1
            return await self.online.chat(body, metrics, stream=stream)
        raise CapacityRefused(
            refused.http_status,
            f"refused {tier.refusals} times for lack of flex capacity (last: "
            f"{str(refused).partition(': ')[2]}); FlexTier(fallback='online') sends such "
            "requests online at the standard price",
        )

    async def close(self) -> None:
        """Nothing of its own to close: the connection is the client's, closed by the run."""


def _stats(metrics: StepMetrics | None) -> LLMStats:
    if metrics is None or metrics.llm is None:
        return LLMStats(model="")  # a request outside a step: counted nowhere
    return llm_stats(metrics)
