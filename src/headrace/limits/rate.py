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
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import PipelineError
from ..values.checks import positive_number
from ..values.durations import to_seconds
from .bucket import TokenBucket
from .pacing import LocalBuckets
from .usage import estimate_tokens, max_tokens, usage_tokens

__all__ = ["LimitLearner", "Permit", "Rate", "estimate_tokens", "usage_tokens"]


class LimitLearner(Protocol):
    """What a :class:`Rate` reads of the learner an auto limit is given when a run first
    uses it (:class:`~headrace.limits.learning.Learner`, made by
    :class:`~headrace.limits.rate_state.RateState`): where the limit came from."""

    @property
    def source(self) -> str | None:
        """``"headers"`` or ``"429s"`` once a limit is learned, else ``None``."""


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
        # an auto limit's learner, made by the first run that uses it (see RateState)
        self.learner: LimitLearner | None = None
        # what a worker process rebuilds this limit from (a lock and waiters do not travel)
        self._given: dict[str, Any] = {
            "requests": requests,
            "tokens": tokens,
            "per": self.per_s,
            "burst": burst,
            "token_burst": token_burst,
            "estimate": estimate,
            "usage": usage,
            "headroom": self.headroom_s,
            "shared": shared,
            "key": key,
            "outage_share": self.outage_share,
            "_auto": _auto,
            "_clock": _clock,
        }
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
        shared: str | None = None,
        key: str = "default",
        outage_share: float = 0.25,
    ) -> Rate:
        """A limit learned while running (see the module's notes); it starts unlimited.

        With ``shared="redis://..."`` the limit learned is one for every process
        using the same ``key`` (see :mod:`headrace.limits.shared_learning`): the
        first to learn it teaches the others, and 429s cut it once for all.
        """
        return cls(
            estimate=estimate,
            usage=usage,
            headroom=headroom,
            shared=shared,
            key=key,
            outage_share=outage_share,
            _auto=True,
        )

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
            described: dict[str, Any] = {"auto": True, "headroom_s": self.headroom_s}
            if self.shared is not None:
                described.update(shared=True, key=self.key)
            return described
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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its settings: a process it is sent to (a Ray worker) starts with
        empty buckets of its own, or the shared ones in Redis, and learns afresh."""
        return (_rebuilt, (self._given,))

    def __repr__(self) -> str:
        if self.learns:
            return f"Rate.auto({self.limit()})"
        return f"Rate(requests={self.requests}, tokens={self.tokens}, per={self.per_s}s)"

    # -- knowledge shared by the runs that use it -----------------------------------

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


def _rebuilt(given: dict[str, Any]) -> Rate:
    return Rate(**given)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
