"""Where a :class:`~headrace.limits.rate.Rate`'s two buckets live: here, or in Redis.

Both keep a request bucket and a token bucket and answer the same three
questions: reserve (how long to wait), adjust (give back or take more), drain.

A Redis that stops answering is an outage of ours, never a failure of the item
being paced: the Redis buckets fall back to buckets in this process at a share of
the limit (``outage_share``, so several processes pacing alone together stay
under it), log one warning per outage, try Redis again every second, and say so
when it answers again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..services.redis_link import redis_script
from ..services.secrecy import scrub_text, scrub_url
from .bucket import TokenBucket

_log = logging.getLogger("headrace.rate")

__all__ = ["MAX_DEBT_S", "Buckets", "LocalBuckets", "RedisBuckets", "bounded_wait"]


class Buckets(Protocol):
    """What a Rate asks of its buckets (a request bucket and a token bucket)."""

    async def reserve(self, requests: float, tokens: float) -> float: ...
    async def adjust(self, requests: float, tokens: float) -> None: ...
    async def drain(self) -> None: ...
    async def close(self) -> None: ...


class LocalBuckets:
    """The buckets in this process, shared by every step and run holding the same Rate."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()  # runs in several threads may share one Rate
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None

    def reserve_now(self, requests: float, tokens: float) -> float:
        with self.lock:
            now = self.clock()
            wait = 0.0
            for bucket, cost in ((self.requests, requests), (self.tokens, tokens)):
                if bucket is not None:
                    wait = max(wait, bucket.reserve(cost, now))
            return wait

    async def reserve(self, requests: float, tokens: float) -> float:
        return self.reserve_now(requests, tokens)

    def adjust_now(self, requests: float, tokens: float) -> None:
        with self.lock:
            now = self.clock()
            for bucket, amount in ((self.requests, requests), (self.tokens, tokens)):
                if bucket is not None and amount:
                    bucket.adjust(amount, now)

    async def adjust(self, requests: float, tokens: float) -> None:
        self.adjust_now(requests, tokens)

    def cap_now(self, requests: float | None, tokens: float | None) -> None:
        """Lower the levels to at most these (``None``: leave as is)."""
        with self.lock:
            now = self.clock()
            for bucket, most in ((self.requests, requests), (self.tokens, tokens)):
                if bucket is not None and most is not None:
                    bucket.level = min(bucket.refill(now), most)

    async def drain(self) -> None:
        self.cap_now(0.0, 0.0)

    async def close(self) -> None:
        return None


MAX_DEBT_S = 600.0
"""The longest wait a bucket can ask for. A debt deeper than this much refill is taken
as tampered (calls queued ten minutes ahead of a limit is no pacing anyone asked for)
and the bucket as empty; no call sleeps longer."""

# One bucket's step at Redis's ``now``: refill, then reserve, adjust or drain; the
# wait it asks for. Shared by the script for a given limit and the one for a learned one.
# What Redis holds is untrusted: a level that is not a finite number between
# MAX_DEBT_S of debt and the capacity is taken as an empty bucket (never a full one),
# and a time that is not a finite one in the past is taken as now. A key
# that is missing is a full bucket, except just after an outage (``missing_full`` is
# then false): Redis restarted empty while this process paced alone.
LUA_STEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local missing_full = true
local function finite(x)
  return x ~= nil and x == x and x > -math.huge and x < math.huge
end
local function step(key, rate, cap, amount, mode, ttl)
  if not finite(rate) or rate <= 0 then return 0 end
  local v = redis.call('HMGET', key, 'level', 'at')
  local level, at = tonumber(v[1]), tonumber(v[2])
  if v[1] == false then
    if missing_full then level = cap else level = 0 end
  elseif not finite(level) or level > cap or level < -rate * MAX_DEBT then level = 0 end
  if not finite(at) or at > now then at = now end
  if now > at then level = math.min(cap, level + (now - at) * rate) end
  if mode == 'reserve' then level = level - amount
  elseif mode == 'adjust' then level = math.min(cap, level + amount)
  else level = math.min(level, 0) end
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'at', string.format('%.17g', now))
  redis.call('PEXPIRE', key, ttl)
  if level < 0 then return math.min(-level / rate, MAX_DEBT) end
  return 0
end
""".replace("MAX_DEBT", repr(MAX_DEBT_S))

_LUA = (
    LUA_STEP
    + """
local mode = ARGV[7]
local ttl = tonumber(ARGV[8])
missing_full = ARGV[9] == '1'
local a = step(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), mode, ttl)
local b = step(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), mode, ttl)
return tostring(math.max(a, b))
"""
)


def bounded_wait(raw: bytes | str | float) -> float:
    """A wait read from Redis as a number of seconds in ``[0, MAX_DEBT_S]`` (anything
    else, a tampered answer, is the longest wait: never a free pass, never for ever)."""
    try:
        wait = float(raw)
    except (TypeError, ValueError):
        return MAX_DEBT_S
    if not math.isfinite(wait):
        return MAX_DEBT_S
    return min(max(wait, 0.0), MAX_DEBT_S)


class RedisBuckets:
    """The same two buckets in Redis: one atomic script per call, on Redis's clock.

    While Redis does not answer, calls are paced by local buckets at
    ``outage_share`` of the limit (see the module's notes); ``outages`` counts the
    outages seen.
    """

    retry_s = 1.0
    lua = _LUA

    def __init__(
        self,
        url: str,
        key: str,
        spec: tuple[float, float, float, float],
        outage_share: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        self.client, self.script = redis_script(url, self.lua, "hr.Rate(shared='redis://...')")
        self.shown = scrub_url(url)
        self.clock = clock
        self.fallback = LocalBuckets(clock)
        self.outage_share = outage_share
        now = clock()
        rq_rate, rq_cap, tk_rate, tk_cap = spec
        if rq_rate > 0:
            self.fallback.requests = TokenBucket(rq_rate * outage_share, rq_cap * outage_share, now)
        if tk_rate > 0:
            self.fallback.tokens = TokenBucket(tk_rate * outage_share, tk_cap * outage_share, now)
        self.down_until = 0.0
        self.warned = False  # an outage was announced and not yet its end
        self.answered_at = -self.retry_s  # when Redis last came back
        self.outages = 0
        self.on_outage = on_outage
        self.keys = [f"headrace:rate:{key}:requests", f"headrace:rate:{key}:tokens"]
        self.spec = spec  # request rate, request capacity, token rate, token capacity
        per_second = min((r for r in (spec[0], spec[2]) if r > 0), default=1.0)
        longest = max(
            (c / r for r, c in ((spec[0], spec[1]), (spec[2], spec[3])) if r > 0), default=0.0
        )
        # a full bucket is the same as no key: let Redis forget it a while after that
        self.ttl_ms = str(int((longest + 60 + 1 / per_second) * 1000))
        self.recovery_s = longest + 1 / per_second  # a bucket's time to fill up

    async def _call(self, mode: str, requests: float, tokens: float) -> float:
        from redis.exceptions import RedisError

        if self.down_until and self.clock() < self.down_until:
            return self._locally(mode, requests, tokens)
        try:
            wait = self.answered(
                await self.script(keys=self.keys, args=self.arguments(mode, requests, tokens))
            )
        except (RedisError, OSError) as exc:
            now = self.clock()
            # a failure just after Redis came back (a stale pooled connection) belongs to
            # the same outage: one warning, one count
            if not self.down_until and now - self.answered_at > self.retry_s:
                self.outages += 1
                self.warned = True
                if self.on_outage is not None:
                    self.on_outage()
                _log.warning(
                    "headrace rate: Redis at %s is not answering (%s); pacing this process "
                    "alone at its share of the limit until it is back",
                    self.shown,
                    scrub_text(str(exc))[:200],
                )
            self.down_until = now + self.retry_s
            return self._locally(mode, requests, tokens)
        if self.down_until:
            self.down_until = 0.0
            self.answered_at = self.clock()
            if self.warned:
                self.warned = False
                _log.warning("headrace rate: Redis at %s answers again", self.shown)
        return wait

    def arguments(self, mode: str, requests: float, tokens: float) -> list[str | float]:
        """The script's arguments for one call."""
        rq_rate, rq_cap, tk_rate, tk_cap = self.spec
        full = self.missing_full()
        return [rq_rate, rq_cap, requests, tk_rate, tk_cap, tokens, mode, self.ttl_ms, full]

    def missing_full(self) -> str:
        """``"1"`` when a missing key is a full bucket; ``"0"`` for a while after this
        process paced alone through an outage (Redis may have restarted empty, and the
        calls made meanwhile were not counted there)."""
        recovering = self.outages and self.clock() - self.answered_at < self.recovery_s
        return "0" if recovering else "1"

    def answered(self, raw: bytes | str) -> float:
        """The wait in the script's answer, bounded (see :data:`MAX_DEBT_S`)."""
        return bounded_wait(raw)

    def _locally(self, mode: str, requests: float, tokens: float) -> float:
        if mode == "reserve":
            return self.fallback.reserve_now(requests, tokens)
        if mode == "adjust":
            self.fallback.adjust_now(requests, tokens)
        else:
            self.fallback.cap_now(0.0, 0.0)
        return 0.0

    async def reserve(self, requests: float, tokens: float) -> float:
        return await self._call("reserve", requests, tokens)

    async def adjust(self, requests: float, tokens: float) -> None:
        await self._call("adjust", requests, tokens)

    async def drain(self) -> None:
        await self._call("drain", 0.0, 0.0)

    async def close(self) -> None:
        await self.client.aclose()
