"""The gate every guarded call passes: one order, one shape for each policy, one retry loop.

A function step's call (:mod:`headrace.engine.call`) and an LLM client's request
(:mod:`headrace.llm.client`) both go through a :class:`Gate`. Each attempt
passes the gate's policies in order: each one's :meth:`~Policy.enter` waits for
its turn (a budget reservation, the circuit, a concurrency slot, the rate
limit), then the call runs, then each one's :meth:`~Policy.leave` hears how it
ended, innermost first, whether it succeeded, failed or was cancelled.
Around the attempts the gate's loop decides what a failure means:

1. a policy refused the call before it ran (an open circuit set to fail, a
   provider down past ``max_outage``, a spent budget): raised as it is;
2. an outage-like failure while the circuit is open or probing: the attempt
   is not counted, and the call waits for the circuit and goes again;
3. otherwise the :class:`~headrace.limits.retry.Retrier` says whether, and
   after how long, to try again;
4. its attempts spent on an outage-like failure while the provider has
   answered nobody since the call began (:meth:`CircuitState.undecided
   <headrace.limits.circuit.CircuitState.undecided>`): not yet the item's fault,
   so it goes on with its backoff until the provider answers someone or the
   circuit opens;
5. else the failure is raised, carrying ``headrace_attempts`` and a note on why
   the retries stopped.

A new policy is one class with ``enter`` and ``leave``, put in the list where
it belongs. Both return ``None`` when they have nothing to wait for (the
common case: a free slot, a closed circuit, a rate limit with tokens to
spare), else an awaitable the gate awaits, so a policy that does not wait
costs one plain call on this hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._types import FILTERED
from ..errors import StepFailed, control_failure
from .call import Call, Policy
from .circuit import CircuitState
from .concurrency import ConcurrencyController, ConcurrencyLimit
from .retry import Retrier, is_throttle

if TYPE_CHECKING:
    from ..metrics import StepMetrics

__all__ = ["Counting", "Gate", "Slots"]


class Slots:
    """A concurrency limit as a policy: a slot per attempt, given back while a retry
    waits, and the adaptive controller told how each call went."""

    __slots__ = ("controller", "limit")

    def __init__(self, limit: ConcurrencyLimit, controller: ConcurrencyController | None) -> None:
        self.limit = limit
        self.controller = controller

    def enter(self, call: Call) -> Coroutine[Any, Any, None] | None:
        """Take a slot, or wait for one if none is free."""
        if not self.limit.try_acquire():
            return self._wait(call)
        call.slotted = perf_counter()
        return None

    async def _wait(self, call: Call) -> None:
        await self.limit.acquire()
        call.slotted = perf_counter()

    def leave(self, call: Call, error: BaseException | None) -> None:
        """Give the slot back; tell the controller the call's time, or its 429."""
        self.limit.release()
        controller = self.controller
        if controller is not None:
            if error is None:
                controller.finished_call(perf_counter() - call.admitted)
            elif isinstance(error, Exception) and is_throttle(error):
                controller.throttled()


class Counting:
    """The innermost policy of a step's gate: counts each attempt into the step's metrics
    (time waiting for a slot, time working, errors, 429s).

    Args:
        metrics: the step's metrics.
        record: how a success's wait and work are recorded (an LLM step's function
            step records untimed calls: its requests are timed by its client).
        counts_throttles: whether a 429 counts here (not where the client counts it).
    """

    __slots__ = ("counts_throttles", "metrics", "record")

    def __init__(
        self, metrics: StepMetrics, record: Callable[[float, float], None], counts_throttles: bool
    ) -> None:
        self.metrics = metrics
        self.record = record
        self.counts_throttles = counts_throttles

    def enter(self, call: Call) -> None:
        """Nothing to wait for."""

    def leave(self, call: Call, error: BaseException | None) -> None:
        """Record a success's times, or count the failure."""
        metrics = self.metrics
        if error is None:
            self.record(call.slotted - call.started, perf_counter() - call.admitted)
        elif isinstance(error, Exception):
            metrics.errors += 1
            if self.counts_throttles:
                metrics.throttled += is_throttle(error)


class Gate:
    """The policies a kind of call passes in one run, outermost first, and its retries.

    Args:
        name: who calls, for messages (a step's name, an endpoint).
        policies: the policies, outermost first.
        retrier: how failed attempts are retried (``None``: not at all).
        circuit: the circuit among ``policies``, if any (the loop asks it whether
            a failure is an outage).
        metrics: where retries are counted (unless a call names other metrics).
    """

    __slots__ = ("circuit", "metrics", "name", "policies", "retrier")

    def __init__(
        self,
        name: str,
        policies: Sequence[Policy],
        *,
        retrier: Retrier | None = None,
        circuit: CircuitState | None = None,
        metrics: StepMetrics,
    ) -> None:
        self.name = name
        self.policies = tuple(policies)
        self.retrier = retrier
        self.circuit = circuit
        self.metrics = metrics

    def handler(self, fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """A step's handler through this gate: ``fn(item)`` called as :meth:`call` says, a
        failure raised as :class:`~headrace.errors.StepFailed` naming the gate, a filtered
        item counted.

        A gate of a plain concurrency slot and the counting alone (no circuit, rate
        limit, adaptive controller or retries: most steps) is the same chain with nothing
        else in it, so its passage is written out here once: no :class:`Call` made and no
        loop over policies, on the hot path of every such step.
        """
        name, metrics = self.name, self.metrics
        plain = self._plain()
        if plain is None:
            call = self.call

            def attempt(passage: Call) -> Awaitable[Any]:
                return fn(passage.value)

            async def handle(value: Any) -> Any:
                try:
                    out = await call(attempt, value)
                except Exception as exc:
                    raise StepFailed(name, exc) from exc
                if out is FILTERED:
                    metrics.filtered += 1
                return out

            return handle
        limit, counting = plain
        try_acquire, acquire, release = limit.try_acquire, limit.acquire, limit.release
        record, counts_throttles = counting.record, counting.counts_throttles

        async def handle_plain(value: Any) -> Any:
            started = perf_counter()
            if not try_acquire():
                await acquire()
            admitted = perf_counter()
            try:
                out = await fn(value)
            except Exception as exc:
                metrics.errors += 1
                if counts_throttles:
                    metrics.throttled += is_throttle(exc)
                raise StepFailed(name, exc) from exc
            except BaseException as raised:  # SystemExit, a CancelledError of its own ...
                failure = control_failure(raised)
                if failure is None:
                    raise  # a real cancellation
                metrics.errors += 1
                raise StepFailed(name, failure) from raised
            finally:
                release()
            record(admitted - started, perf_counter() - admitted)
            if out is FILTERED:
                metrics.filtered += 1
            return out

        return handle_plain

    def _plain(self) -> tuple[ConcurrencyLimit, Counting] | None:
        """The slot and the counting of a gate that holds nothing else, else ``None``."""
        if self.retrier is not None or self.circuit is not None or len(self.policies) != 2:
            return None
        slots, counting = self.policies
        if type(slots) is not Slots or slots.controller is not None:
            return None
        if type(counting) is not Counting or counting.metrics is not self.metrics:
            return None
        return slots.limit, counting

    async def call(
        self,
        fn: Callable[[Call], Awaitable[Any]],
        value: Any,
        *,
        prompt_tokens: int | None = None,
        metrics: StepMetrics | None = None,
    ) -> Any:
        """Call ``fn`` through the policies, retrying as the gate's rules say (see the
        module's notes); return its output.

        ``fn`` gets the :class:`Call` (its ``value`` is ``value``) and may set the
        call's ``usage`` and ``headers`` for the rate limit.
        """
        retrier, circuit = self.retrier, self.circuit
        if metrics is None:
            metrics = self.metrics
        if retrier is not None:
            retrier.first_attempt()
        answers = circuit.answers if circuit is not None else 0
        policies = self.policies
        attempt = 1
        while True:
            call = Call(self.name, value, metrics, prompt_tokens)
            entered = 0
            try:
                for policy in policies:
                    waiting = policy.enter(call)
                    if waiting is not None:
                        await waiting
                    entered += 1
                call.admitted = perf_counter()
                call.called = True
                call.output = await fn(call)
            except Exception as error:
                await _leave(policies[:entered], call, error)
                if not call.called:
                    raise  # refused before it ran: there is nothing to try again
                if circuit is not None and circuit.holds(error):
                    continue  # the provider is down: wait for the circuit, attempt kept
                delay = None
                if retrier is not None:
                    delay = retrier.retry_delay(attempt, error, metrics)
                    if delay is None and circuit is not None and circuit.undecided(error, answers):
                        delay = retrier.backoff(attempt, error)
                if delay is None:
                    if retrier is not None:  # the dead letter counts the calls made for it
                        error.headrace_attempts = attempt  # type: ignore[attr-defined]
                        error.add_note(retrier.gave_up(attempt, error))
                    raise
            except BaseException as cancelled:
                failure = control_failure(cancelled) if call.called else None
                if failure is None:  # a real cancellation (or before the step ran): go on up
                    await _leave(policies[:entered], call, cancelled)
                    raise
                # the step itself raised SystemExit, CancelledError ...: this item's failure
                await _leave(policies[:entered], call, failure)
                raise failure from cancelled
            else:
                for policy in reversed(policies):
                    finishing = policy.leave(call, None)
                    if finishing is not None:
                        await finishing
                return call.output
            await asyncio.sleep(delay)
            attempt += 1


async def _leave(policies: Sequence[Policy], call: Call, error: BaseException | None) -> None:
    """Let each entered policy hear how ``call`` ended, innermost first."""
    for policy in reversed(policies):
        finishing = policy.leave(call, error)
        if finishing is not None:
            await finishing
