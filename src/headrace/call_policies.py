"""The policies around one step's call, each a handler wrapping the next.

:func:`headrace.call.bind_function_step` puts them together, outermost first:
the entry order (``ordered``), the fallback, the cache, the item's total time
limit, the retry, the circuit, then the call itself (its concurrency slot, the
rate limit and the per-attempt timeout). So a retry waits outside the slot it
gave back, an open circuit holds an item without spending its attempts, and a
cache hit takes no slot at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._types import FILTERED
from .errors import ProviderDown, StepFailed, StepTimeout
from .limits.circuit import CircuitOpen, CircuitState
from .limits.retry import Retrier, Retry
from .metrics import StepMetrics
from .sequencer import Sequencer

if TYPE_CHECKING:
    from .runtime import Handler

__all__ = ["bounded", "falling_back", "guarded", "in_entry_order", "retrying"]


def retrying(handler: Handler, retry: Retry, metrics: StepMetrics) -> Handler:
    """Call ``handler`` again after a retryable failure, as ``retry`` says.

    The concurrency slot is given back while waiting (the handler takes it per
    attempt), so a backing-off item does not hold capacity it is not using.
    """
    retrier = Retrier(retry)

    async def handle(value: Any) -> Any:
        retrier.first_attempt()
        attempt = 1
        while True:
            try:
                return await handler(value)
            except StepFailed as failure:
                cause = failure.cause
                failure.attempts = attempt
                delay = retrier.retry_delay(attempt, cause, metrics)
                if delay is None:
                    failure.add_note(retrier.gave_up(attempt, cause))
                    raise
            await asyncio.sleep(delay)
            attempt += 1

    return handle


def guarded(handler: Handler, circuit: CircuitState, name: str) -> Handler:
    """Hold (or refuse) calls while ``circuit`` is open; tell it how each call ended.

    An outage-like failure while the circuit is open goes again once it lets calls
    through, without reaching the retry around this (see :mod:`headrace.limits.circuit`).
    """

    async def handle(value: Any) -> Any:
        while True:
            try:
                probe = await circuit.wait_turn(f"step {name!r}")
            except (CircuitOpen, ProviderDown) as error:
                raise StepFailed(name, error) from None
            try:
                out = await handler(value)
            except StepFailed as failure:
                circuit.failed(failure.cause)
                if circuit.holds(failure.cause):
                    continue
                raise
            except BaseException:
                if probe:
                    circuit.probing = False  # cancelled: the probe's turn passes on
                raise
            circuit.succeeded()
            return out

    return handle


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
