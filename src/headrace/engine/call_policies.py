"""The policies around one item's whole passage through a step, each a handler
wrapping the next.

:func:`headrace.engine.call.call_chain` lists them, outermost first:
the entry order (``ordered``), the fallback, the cache, the item's total time
limit, then the step's :class:`~headrace.limits.gate.Gate` (its retries, and per
attempt the circuit, a concurrency slot, the rate limit and the per-attempt
timeout). So a retry waits outside the slot it gave back, an open circuit holds
an item without spending its attempts, and a cache hit takes no slot at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._types import FILTERED
from ..errors import StepFailed, StepTimeout
from ..metrics import StepMetrics
from .sequencer import Sequencer

if TYPE_CHECKING:
    from .context import Handler

__all__ = ["bounded", "falling_back", "in_entry_order"]


def bounded(handler: Handler, total_s: float, name: str, metrics: StepMetrics) -> Handler:
    """Fail the item when its time in the step, all attempts included, passes ``total_s``."""

    async def handle(value: Any) -> Any:
        deadline = asyncio.timeout(total_s)
        try:
            async with deadline:
                return await handler(value)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            metrics.errors += 1
            raise StepFailed(name, StepTimeout(name, total_s)) from exc

    return handle


def falling_back(
    handler: Handler,
    fallback: Handler,
    when: Callable[[BaseException], bool],
    metrics: StepMetrics,
) -> Handler:
    """Run ``fallback`` on the item when ``handler`` failed in a way ``when`` accepts."""

    async def handle(value: Any) -> Any:
        try:
            return await handler(value)
        except StepFailed as failure:
            if not when(failure.cause):
                raise
            metrics.fallbacks += 1
            try:
                return await fallback(value)
            except StepFailed as second:
                second.add_note(f"the fallback ran after: {failure}")
                raise

    return handle


def in_entry_order(handler: Handler, sequencer: Sequencer) -> Handler:
    """Make items leave a step in the order they entered it."""

    async def handle(value: Any) -> Any:
        ticket = sequencer.ticket()
        try:
            out = await handler(value)
        except BaseException:
            sequencer.done(ticket)
            raise
        if out is not FILTERED:
            await sequencer.wait_turn(ticket)
        sequencer.done(ticket)
        return out

    return handle
