"""Keeping a provider's rate limit: requests and tokens per minute, known or learned.

How a call goes through a :class:`Rate`:

1. **Reserve before the call.** One request and the call's *estimated* tokens
   are taken from two token buckets, into debt if need be; the caller then
   sleeps until the debt is paid. Reservations are made in arrival order, so
   waiting callers leave one by one at the provider's rate and never herd.
2. **Reconcile after it.** The tokens the call really used (the ``usage`` of
   its output) replace the estimate: the difference is given back, or taken.
   The completion size learned this way feeds later estimates.
3. **Spend a burst only as far as the provider allows.** The buckets start full
   at the provider's burst less a ``headroom`` of 50 ms of the rate (at most
   half the burst): the tokens left unspent absorb the jitter between when a
   request is sent and when it arrives.
4. **A 429 empties the buckets.** The provider's bucket is empty (someone else
   may share the key), so ours is too; with ``x-ratelimit-remaining-*``
   headers it is set to what the provider reports.

:meth:`Rate.auto` learns the limit instead: from ``x-ratelimit-limit-*`` headers
as soon as one response carries them (a 429, or a success reported with
:func:`observe`); without headers, from 429s, by additive increase and
multiplicative decrease around the rate that was getting through. Until it has
learned a rate it paces calls by a window of calls in flight that starts at one
and grows by one with each success (TCP's slow start), so that it never sends
more than about twice what got through before the provider's first answer.

``shared="redis://..."`` keeps the buckets in Redis (one atomic Lua script per
call, on the Redis server's clock), so processes and machines share one limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..durations import to_seconds
from ..errors import PipelineError, positive_number
from .bucket import TokenBucket
from .learning import Learner, header, lower
from .pacing import Buckets, LocalBuckets, RedisBuckets
from .retry import headers_of, is_throttle
from .usage import estimate_tokens, max_tokens, usage_tokens

if TYPE_CHECKING:
    from ..metrics import StepMetrics
    from .gate import Call

__all__ = ["Permit", "Rate", "RateState", "estimate_tokens", "observe", "usage_tokens"]

_PER = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(slots=True)
class Permit:
    """One call's reservation: its estimated tokens and where it stood in the sequence."""

    prompt: int
    tokens: float
    ticket: int
    tokens_before: float
    in_window: bool = False


class Rate:
    """A provider's rate limit, kept before each call of the steps that carry it.

    Give it to a step (``@hr.step(rate=hr.Rate(requests=500, per="minute"))``);
    give the same ``Rate`` to several steps that call one provider key, and they
    share its limit. See the module's notes for how calls are paced.

    Args:
        requests: requests allowed per ``per`` (``None``: no request limit).
        tokens: tokens (prompt plus completion) allowed per ``per``.
        per: ``"second"``, ``"minute"``, ``"hour"``, ``"day"``, or a duration.
        burst: the provider's request burst; default one second's worth.
        token_burst: the provider's token burst; default one second's worth.
        estimate: a function of the item giving its prompt tokens
            (default :func:`estimate_tokens`); the completion is added from what
            earlier calls used (or the item's ``max_tokens`` before any has finished).
        usage: a function of the output giving the tokens used (default
            :func:`usage_tokens`; ``None`` from it keeps the estimate).
        headroom: how much of the rate to leave unspent in each bucket, as time
            (default 50 ms' worth, at most half the burst), for arrival jitter.
        shared: ``"redis://host:port/db"`` to keep the limit in Redis, shared by
            every process using the same ``key``.
        key: names the shared limit in Redis (one per provider key).
        outage_share: with ``shared``: while Redis does not answer, this process
            paces itself alone at this share of the limit (0.25: four processes
            sharing the limit stay under it together); items wait, they never fail
            for it. Counted in the summary.

    Raises:
        PipelineError: no limit, or an invalid value.
    """

    def __init__(
        self,
        requests: float | None = None,
        tokens: float | None = None,
        per: str | float = "minute",
        *,
        burst: float | None = None,
        token_burst: float | None = None,
        estimate: Callable[[Any], int] | None = None,
        usage: Callable[[Any], int | None] | None = None,
        headroom: float | str = 0.05,
        shared: str | None = None,
        key: str = "default",
        outage_share: float = 0.25,
        _auto: bool = False,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        period = _PER.get(per) if isinstance(per, str) else None
        self.per_s = period if period is not None else to_seconds(per, option="per")
        if not self.per_s > 0:
            raise PipelineError(f"Rate per must be a positive duration, got {per!r}")
        for name, value in (
            ("requests", requests),
            ("tokens", tokens),
            ("burst", burst),
            ("token_burst", token_burst),
        ):
            if value is not None:
                positive_number(value, f"Rate {name}")
        if requests is None and tokens is None and not _auto:
            raise PipelineError(
                "Rate needs requests=, tokens= or both; use hr.Rate.auto() to learn the limit"
            )
        self.headroom_s = to_seconds(headroom, option="headroom")
        if isinstance(outage_share, bool) or not 0 < outage_share <= 1:
            raise PipelineError(f"Rate outage_share must be in (0, 1], got {outage_share!r}")
        self.outage_share = float(outage_share)
        if shared is not None and not shared.startswith(("redis://", "rediss://", "unix://")):
            raise PipelineError(f"Rate shared= takes a redis:// URL, got {shared!r}")
        self.requests = requests
        self.tokens = tokens
        self.burst = burst
        self.token_burst = token_burst
        self.estimate = estimate or estimate_tokens
        self.usage = usage or usage_tokens
        self.shared = shared
        self.key = key
        self.learns = _auto
        self.clock = _clock
        self.local = LocalBuckets(_clock)
        self.learner = Learner(self) if _auto else None
        self.completion: float | None = None  # running mean of completion tokens
        self.tickets = 0
        self.tokens_reserved = 0.0
        self.window = 1.0  # calls in flight allowed while an auto rate has learned nothing
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        if requests is not None:
            self.set_requests(requests / self.per_s)
        if tokens is not None:
            self.set_tokens(tokens / self.per_s)

    @classmethod
    def auto(
        cls,
        *,
        estimate: Callable[[Any], int] | None = None,
        usage: Callable[[Any], int | None] | None = None,
        headroom: float | str = 0.05,
    ) -> Rate:
        """A limit learned while running (see the module's notes); it starts unlimited."""
        return cls(estimate=estimate, usage=usage, headroom=headroom, _auto=True)

    # -- the limit itself -------------------------------------------------------------

    def _capacity(self, rate: float, burst: float | None) -> float:
        size = burst if burst is not None else max(1.0, rate)  # default: one second's worth
        return size - self.headroom_for(rate, size)

    def headroom_for(self, rate: float, size: float) -> float:
        """The tokens kept back from a bucket of ``size`` filling at ``rate``."""
        return min(size / 2, rate * self.headroom_s)

    def set_requests(self, per_second: float, level: float | None = None) -> None:
        """Set (or learn) the request rate, its bucket at ``level`` if given."""
        self._set_bucket("requests", per_second, self.burst, level)

    def set_tokens(self, per_second: float, level: float | None = None) -> None:
        """Set (or learn) the token rate, its bucket at ``level`` if given."""
        self._set_bucket("tokens", per_second, self.token_burst, level)

    def _set_bucket(
        self, kind: str, per_second: float, burst: float | None, level: float | None
    ) -> None:
        """Create or re-rate the ``kind`` bucket; ``level`` sets what it holds now."""
        now = self.clock()
        capacity = self._capacity(per_second, None if self.learns else burst)
        with self.local.lock:
            bucket: TokenBucket | None = getattr(self.local, kind)
            if bucket is None:
                bucket = TokenBucket(per_second, capacity, now)
                setattr(self.local, kind, bucket)
            else:
                bucket.set_rate(per_second, capacity, now)
            if level is not None:
                bucket.level = min(capacity, level)

    def limit(self) -> dict[str, Any]:
        """The limit in force: requests and tokens per minute, and where it came from."""
        requests, tokens = self.local.requests, self.local.tokens
        source = "given" if not self.learns else (self.learner.source if self.learner else None)
        return {
            "requests_per_minute": None if requests is None else round(requests.rate * 60, 3),
            "tokens_per_minute": None if tokens is None else round(tokens.rate * 60, 3),
            "source": source or "not learned yet",
        }

    def describe(self) -> dict[str, Any]:
        """The settings as plain data (part of a step's definition)."""
        if self.learns:
            return {"auto": True, "headroom_s": self.headroom_s}
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "per_s": self.per_s,
            "burst": self.burst,
            "token_burst": self.token_burst,
            "headroom_s": self.headroom_s,
            "shared": self.shared is not None,
            "key": self.key,
        }

    def __repr__(self) -> str:
        if self.learns:
            return f"Rate.auto({self.limit()})"
        return f"Rate(requests={self.requests}, tokens={self.tokens}, per={self.per_s}s)"

    # -- knowledge shared by the runs that use it -----------------------------------

    def new_state(self) -> RateState:
        """This limit at work in one run (its buckets' connection, verbs and counts)."""
        return RateState(self)

    def permit(self, value: Any, prompt_tokens: int | None = None) -> Permit:
        """Estimate ``value``'s call: its prompt (``prompt_tokens`` when the caller has
        counted it), and prompt plus expected completion."""
        if prompt_tokens is not None:
            prompt = prompt_tokens
        elif self.local.tokens is not None or self.learns:
            prompt = int(self.estimate(value))
        else:
            prompt = 0
        expected = self.completion
        if expected is None:
            expected = float(max_tokens(value) or 0)
        else:
            ceiling = max_tokens(value)
            expected = min(expected, ceiling) if ceiling is not None else expected
        self.tickets += 1
        tokens = prompt + expected
        permit = Permit(prompt, tokens, self.tickets, self.tokens_reserved)
        self.tokens_reserved += tokens
        return permit

    def windowed(self) -> bool:
        """Whether calls are paced by the window of calls in flight (an auto limit that
        has learned no rate yet)."""
        return self.learner is not None and self.learner.source is None

    def wake(self) -> None:
        """Let waiting callers go as far as the window of calls in flight allows."""
        free = math.inf if not self.windowed() else self.window - self.in_flight
        while self.waiters and free > 0:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)
                free -= 1


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
        self.throttled = 0
        self.outages = 0
        local = settings.local
        if settings.shared is None:
            self.buckets: Buckets = local
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

    def limit(self) -> dict[str, Any]:
        """The limit in force (:meth:`Rate.limit`), with this run's Redis outages."""
        limit = self.settings.limit()
        if self.settings.shared is not None:
            limit["redis_outages"] = self.outages
        return limit

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
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self.settings.local.adjust_now(1.0, permit.tokens)
            raise
        waited = time.perf_counter() - started
        if waited > 1e-3 and call.metrics is not None:
            call.metrics.rate_waits += 1
            call.metrics.rate_wait_s += waited
        self._hold(call, permit)

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
        waited = time.perf_counter() - started
        if waited > 1e-3 and metrics is not None:  # a wait, not just the bookkeeping
            metrics.rate_waits += 1
            metrics.rate_wait_s += waited
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
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                await asyncio.shield(self.buckets.adjust(1.0, permit.tokens))
                raise
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
        rate = self.settings
        if rate.learner is not None:
            rate.learner.success(rate.clock())
            if rate.windowed():
                rate.window += 1
            rate.learner.grow()
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
        rate, buckets = self.settings, self.buckets
        seen = lower(headers)
        if rate.learner is not None and not rate.learner.learn(seen, permit):
            rate.learner.cut()
        remaining = {
            kind: header(seen, f"x-ratelimit-remaining-{kind}") for kind in ("requests", "tokens")
        }
        if isinstance(buckets, LocalBuckets) and any(v is not None for v in remaining.values()):
            buckets.cap_now(remaining["requests"], remaining["tokens"])
        else:
            await buckets.drain()

    def observe(self, permit: Permit | None, headers: Mapping[str, Any]) -> None:
        """Learn from a successful response's headers (only :meth:`Rate.auto` limits use them)."""
        learner = self.settings.learner
        if learner is not None:
            learner.learn(lower(headers), permit)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


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
