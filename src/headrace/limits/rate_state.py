"""A :class:`~headrace.limits.rate.Rate` at work in one run: :class:`RateState`, and
:func:`observe` for a step's function to report its answer's headers."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..metrics.readings import RateReading
from .learning import Learner, header, lower
from .pacing import Buckets, LocalBuckets, RedisBuckets
from .retry import headers_of, is_throttle
from .shared_learning import LearnedRedisBuckets, SharedLearner

if TYPE_CHECKING:
    from ..metrics import StepMetrics
    from .call import Call
    from .rate import Permit, Rate

__all__ = ["RateState", "current_permit", "learner_of", "observe"]

_MAKING = threading.Lock()


def learner_of(rate: Rate) -> Learner | None:
    """The learner of an auto limit (``None`` for a given one), made the first time a
    run uses it and kept by the :class:`Rate`: what it learns outlives the run."""
    if not rate.learns:
        return None
    with _MAKING:  # runs in several threads may start with one Rate at once
        if rate.learner is None:
            rate.learner = (SharedLearner if rate.shared else Learner)(rate)
    learner = rate.learner
    assert isinstance(learner, Learner)
    return learner


class RateState:
    """A :class:`Rate` at work in one run: the buckets it reserves from (this process's,
    or a Redis connection of the run's own), the verbs of one call, and the run's counts.

    What is known of the provider (the limit, given or learned; how full this
    process's buckets are; the completion size) stays with the ``Rate``, as the
    provider keeps it between runs; what a run did (its 429s, its Redis outages,
    its connection) is the state's. As a policy of a
    :class:`~headrace.limits.gate.Gate` it reserves before the call and reconciles after.

    Attributes:
        settings: the :class:`Rate`.
        buckets: where this run reserves.
        throttled: 429s the run's calls drew.
        outages: times Redis stopped answering in this run (``shared=``).
    """

    def __init__(self, settings: Rate) -> None:
        self.settings = settings
        self.learner = learner_of(settings)
        self.throttled = 0
        self.outages = 0
        local = settings.local
        if settings.shared is None:
            self.buckets: Buckets = local
        elif isinstance(self.learner, SharedLearner):
            self.buckets = LearnedRedisBuckets(settings, self.learner, self._count_outage)
        else:
            spec = (
                local.requests.rate if local.requests else 0.0,
                local.requests.capacity if local.requests else 0.0,
                local.tokens.rate if local.tokens else 0.0,
                local.tokens.capacity if local.tokens else 0.0,
            )
            self.buckets = RedisBuckets(
                settings.shared,
                settings.key,
                spec,
                settings.outage_share,
                settings.clock,
                self._count_outage,
            )

    def _count_outage(self) -> None:
        self.outages += 1

    @property
    def outage_share(self) -> float:
        """The share of the limit paced locally while a shared limit's Redis is down."""
        return self.settings.outage_share

    def limit(self) -> dict[str, Any]:
        """The limit in force (:meth:`Rate.limit`), with this run's Redis outages."""
        limit = self.settings.limit()
        if self.settings.shared is not None:
            limit["redis_outages"] = self.outages
        return limit

    def statistics(self) -> RateReading:
        """A snapshot of the limit in force and this run's Redis outages."""
        limit = self.settings.limit()
        return RateReading(
            requests_per_minute=limit["requests_per_minute"],
            tokens_per_minute=limit["tokens_per_minute"],
            source=limit["source"],
            redis_outages=self.outages if self.settings.shared is not None else None,
            outage_share=self.settings.outage_share,
        )

    async def close(self) -> None:
        """Close the run's Redis connection, if it has one."""
        if self.buckets is not self.settings.local:
            await self.buckets.close()

    # -- a policy of the gate ---------------------------------------------------------

    def enter(self, call: Call) -> Coroutine[Any, Any, None] | None:
        """Reserve the call's request and tokens: at once when this process's buckets
        hold them, else wait until they are paid for."""
        rate = self.settings
        if self.buckets is not rate.local or rate.windowed():
            return self._admit(call)
        permit = rate.permit(call.value, call.prompt_tokens)
        wait = rate.local.reserve_now(1.0, permit.tokens)
        if wait > 0:
            return self._pay(call, permit, wait)
        self._hold(call, permit)
        return None

    async def _admit(self, call: Call) -> None:
        permit = await self.admit(call.value, call.metrics, prompt_tokens=call.prompt_tokens)
        self._hold(call, permit)

    async def _pay(self, call: Call, permit: Permit, wait: float) -> None:
        started = time.perf_counter()
        await self._wait_paid(permit, wait)
        _count_wait(call.metrics, time.perf_counter() - started)
        self._hold(call, permit)

    async def _wait_paid(self, permit: Permit, wait: float) -> None:
        """Sleep until the permit's reservation is paid for; a cancelled wait gives
        the reservation back."""
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            await asyncio.shield(self.buckets.adjust(1.0, permit.tokens))
            raise

    def _hold(self, call: Call, permit: Permit) -> None:
        call.permit = permit
        call.observing = _CURRENT.set((self, permit))  # for hr.observe() in the step's function

    def leave(self, call: Call, error: BaseException | None) -> Coroutine[Any, Any, None] | None:
        """Reconcile a success's tokens, or empty the buckets after a 429; give the
        permit back however the call ended."""
        permit = call.permit
        if permit is None:
            return None
        if call.observing is not None:
            _CURRENT.reset(call.observing)
        if error is None:
            if call.headers is not None:
                self.observe(permit, call.headers)
            give_back = self._reconcile(permit, call.output if call.usage is None else call.usage)
            if give_back:
                if self.buckets is not self.settings.local:
                    return self._finish(permit, self.buckets.adjust(0.0, give_back))
                self.settings.local.adjust_now(0.0, give_back)
        elif isinstance(error, Exception) and is_throttle(error):
            return self._finish(permit, self.throttled_by(permit, headers_of(error)))
        self.release(permit)
        return None

    async def _finish(self, permit: Permit, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self.release(permit)

    # -- the verbs of one call --------------------------------------------------------

    async def admit(
        self, value: Any, metrics: StepMetrics | None, *, prompt_tokens: int | None = None
    ) -> Permit:
        """:meth:`acquire`, counting a wait (longer than 1 ms) in the step's ``metrics``."""
        started = time.perf_counter()
        permit = await self.acquire(value, prompt_tokens=prompt_tokens)
        _count_wait(metrics, time.perf_counter() - started)
        return permit

    async def acquire(self, value: Any, *, prompt_tokens: int | None = None) -> Permit:
        """Reserve one request and ``value``'s tokens, and wait until they are paid for.

        ``prompt_tokens`` replaces the estimate of the prompt when the caller has
        counted it. Every permit must be given back with :meth:`release` when its
        call ends.
        """
        rate = self.settings
        while rate.windowed() and rate.in_flight >= rate.window:
            waiter = asyncio.get_running_loop().create_future()
            rate.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in rate.waiters:
                    rate.waiters.remove(waiter)
                rate.wake()
                raise
        permit = rate.permit(value, prompt_tokens)
        if rate.windowed():
            rate.in_flight += 1
            permit.in_window = True
        wait = await self.buckets.reserve(1.0, permit.tokens)
        if wait > 0:
            await self._wait_paid(permit, wait)
        return permit

    def release(self, permit: Permit) -> None:
        """The permit's call has ended, however it ended."""
        if permit.in_window:
            permit.in_window = False
            self.settings.in_flight -= 1
            self.settings.wake()

    async def succeeded(self, permit: Permit, output: Any) -> None:
        """Reconcile the estimate with the tokens ``output`` says were used."""
        give_back = self._reconcile(permit, output)
        if give_back:
            await self.buckets.adjust(0.0, give_back)

    def _reconcile(self, permit: Permit, output: Any) -> float:
        """Learn from a success; return the tokens to give back to the buckets (less
        than 0: to take) now that ``output`` says what the call used."""
        rate, learner = self.settings, self.learner
        if learner is not None:
            learner.success(rate.clock())
            if rate.windowed():
                rate.window += 1
            learner.grow()
        used = rate.usage(output)
        if used is None:
            return 0.0
        completion = max(0.0, used - permit.prompt)
        rate.completion = (
            completion if rate.completion is None else 0.9 * rate.completion + 0.1 * completion
        )
        if rate.local.tokens is not None and used != permit.tokens:
            return permit.tokens - used
        return 0.0

    async def throttled_by(self, permit: Permit | None, headers: Mapping[str, Any] | None) -> None:
        """The provider answered 429: empty the buckets (or set them from its headers)."""
        self.throttled += 1
        buckets = self.buckets
        seen = lower(headers)
        if self.learner is not None and not self.learner.learn(seen, permit):
            self.learner.cut()
        remaining = {
            kind: header(seen, f"x-ratelimit-remaining-{kind}") for kind in ("requests", "tokens")
        }
        if isinstance(buckets, LocalBuckets) and any(v is not None for v in remaining.values()):
            buckets.cap_now(remaining["requests"], remaining["tokens"])
        else:
            await buckets.drain()

    def observe(self, permit: Permit | None, headers: Mapping[str, Any]) -> None:
        """Learn from a successful response's headers (only :meth:`Rate.auto` limits use them)."""
        if self.learner is not None:
            self.learner.learn(lower(headers), permit)


def _count_wait(metrics: StepMetrics | None, waited: float) -> None:
    """Count a wait for the rate limit in the step's metrics (one longer than 1 ms: a
    wait, not just the reservation's bookkeeping)."""
    if waited > 1e-3 and metrics is not None:
        metrics.rate_waits += 1
        metrics.rate_wait_s += waited


_CURRENT: contextvars.ContextVar[tuple[RateState, Permit] | None] = contextvars.ContextVar(
    "headrace_rate", default=None
)


def observe(headers: Mapping[str, Any]) -> None:
    """Report a successful response's headers to the running step's :class:`Rate`.

    Call it from a step's function with the provider's response headers: an
    :meth:`Rate.auto` limit learns the limit from ``x-ratelimit-limit-*`` at once
    instead of waiting for a 429. Outside a rate-limited step it does nothing.
    """
    current = _CURRENT.get()
    if current is not None:
        rate, permit = current
        rate.observe(permit, headers)


def current_permit() -> contextvars.ContextVar[tuple[RateState, Permit] | None]:
    """The context variable :func:`observe` reads (set by the step's handler)."""
    return _CURRENT
