"""One adaptive concurrency limit for every process of a run on a cluster.

``hr.AdaptiveConcurrency(shared="redis://...")`` keeps the group's limit in one
Redis hash, ``headrace:concurrency:<key>``, and the processes using it in a
sorted set beside it (each with the time it last reported), and the share each
holds in a third hash (its share, or more while it still has more calls in
flight than that). A process holds its share: the limit divided by the
processes that reported in the last :data:`EXPIRY_S` seconds, but never more
than the others leave free, and at least one slot. So the shares add up to at
most the limit (or one slot a process, if that is more), except for the round
after a cut, until each process has reported once more and taken its smaller
share.

Each process runs the rules of :class:`~headrace.limits.concurrency.AdaptiveConcurrency`
on its own calls, round by round (a round: as many finished calls as its share),
but instead of moving its own limit it reports the round to one Lua script,
which moves the group's limit on Redis's clock, atomically, and answers with the
limit and the number of processes. With ``n`` processes each round is ``1/n`` of
the group's round, so each report moves the limit by the ``n``-th root of the
local rule: a round with calls queueing cuts it by ``0.9 ** (1/n)``, a 429 by
``0.75 ** (1/n)``, a healthy round grows it by ``2 ** (1/n)`` during slow start
(until any process sees trouble) and by ``1/n`` after. So ``n`` processes that
each see the same thing move the limit as one process would; the best latency
is the lowest any process has seen.

A process that finishes leaves the group (its share goes to the others at their
next report); one that dies drops out after :data:`EXPIRY_S` seconds. While
Redis does not answer, a process keeps its share and only cuts it (by 25% on a
429 or a round of queueing calls: every process growing alone would overshoot),
and says so once.

Everything read back from Redis is untrusted: a limit that is not a number in
``[min, max]`` is replaced by ``initial``, a share that is not one in ``[0, max]``
counts as none, and a member whose last report is in the future (a score no
process writes, ``+inf`` included) is dropped like one that went silent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..services.redis_link import redis_script
from ..services.secrecy import scrub_text, scrub_url
from .concurrency import ConcurrencyController, ConcurrencyLimit

if TYPE_CHECKING:
    from .concurrency import AdaptiveConcurrency

__all__ = ["EXPIRY_S", "REFRESH_S", "SharedConcurrencyController", "controller_for"]

_log = logging.getLogger("headrace.run")

EXPIRY_S = 60.0
"""A process that has not reported for this long is no longer counted in the group."""

REFRESH_S = 10.0
"""A process reports at least this often while its calls finish (to stay counted)."""

_STRENGTH = {"hello": 0, "none": 0, "round": 1, "throttle": 2}

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member, signal = ARGV[1], ARGV[2]
local recent, seen_best = tonumber(ARGV[3]), tonumber(ARGV[4])
local initial, lo, hi = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tolerance, expiry, in_use = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
-- members expire by their last report, on Redis's clock: one reported in the future
-- (a tampered score, +inf included) is as stale as one that stopped reporting
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - expiry)) do
  redis.call('HDEL', KEYS[3], gone)
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now + 1), '+inf')) do
  redis.call('HDEL', KEYS[3], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - expiry)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '(' .. (now + 1), '+inf')
if signal == 'leave' then
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
else
  redis.call('ZADD', KEYS[2], now, member)
end
local n = math.max(1, redis.call('ZCARD', KEYS[2]))
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '')
if limit == nil or limit ~= limit or limit < lo or limit > hi then limit = initial end
local best = tonumber(redis.call('HGET', KEYS[1], 'best') or '')
if best == nil or best ~= best or best <= 0 then best = -1 end
if seen_best > 0 and (best < 0 or seen_best < best) then best = seen_best end
local slow = redis.call('HGET', KEYS[1], 'slow') ~= '0'
if signal == 'throttle' then
  limit = limit * 0.75 ^ (1 / n)
  slow = false
elseif signal == 'round' then
  if recent > 0 and best > 0 and recent > tolerance * best then
    limit = limit * 0.9 ^ (1 / n)
    slow = false
  elseif slow then
    limit = limit * 2 ^ (1 / n)
  else
    limit = limit + 1 / n
  end
end
limit = math.max(lo, math.min(hi, limit))
redis.call('HSET', KEYS[1], 'limit', string.format('%.17g', limit),
  'best', string.format('%.17g', best), 'slow', slow and '1' or '0')
local others = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if m ~= member then
    -- a share that is not a number between 0 and the most is not held (tampered)
    local held = tonumber(redis.call('HGET', KEYS[3], m) or '')
    if held == nil or held ~= held or held < 0 or held > hi then held = 0 end
    others = others + held
  end
end
local share = math.max(1, math.min(math.floor(limit / n), math.floor(limit - others)))
-- a process holds what it has in flight until those calls end, whatever its share
if signal ~= 'leave' then redis.call('HSET', KEYS[3], member, math.max(share, in_use)) end
local ttl = math.ceil(expiry * 60)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
return {string.format('%.17g', limit), n, share}
"""


def controller_for(
    policy: AdaptiveConcurrency, limit: ConcurrencyLimit, step: str
) -> ConcurrencyController:
    """What moves ``limit``, the concurrency of step ``step`` in one run: the group's
    share when ``policy`` is shared, else the process's own rules."""
    if policy.shared is None:
        return ConcurrencyController(policy, limit)
    return SharedConcurrencyController(policy, limit, policy.key or step)


class SharedConcurrencyController(ConcurrencyController):
    """Holds this process's share of a limit moved by the whole group (see the
    module's notes). Until Redis first answers, the share is one slot."""

    def __init__(self, policy: AdaptiveConcurrency, limit: ConcurrencyLimit, key: str) -> None:
        super().__init__(policy, limit)
        assert policy.shared is not None
        self.client, self.script = redis_script(
            policy.shared, _SCRIPT, "hr.AdaptiveConcurrency(shared='redis://...')"
        )
        self.keys = [
            f"headrace:concurrency:{key}",
            f"headrace:concurrency:{key}:members",
            f"headrace:concurrency:{key}:shares",
        ]
        self.shown = scrub_url(policy.shared)
        self.member = uuid.uuid4().hex
        self.group_limit: float | None = None  # the group's limit, as Redis last said
        self.group_size = 0
        self.sending: asyncio.Task[None] | None = None
        self.unsent: str | None = None
        self.last_report = -math.inf
        self.down = False
        self.outages = 0
        limit.set_limit(1)
        self._send("hello")

    def finished_call(self, latency_s: float) -> None:
        super().finished_call(latency_s)
        if time.monotonic() - self.last_report >= REFRESH_S:
            self._send("none")

    def _cut(self) -> None:
        self._send("throttle")

    def _end_round(self) -> None:
        self._send("round")

    def _send(self, signal: str) -> None:
        """Report ``signal``: one report on its way at a time; what comes meanwhile
        goes next (the stronger of two: a 429 over a round over nothing)."""
        if self.sending is not None and not self.sending.done():
            if self.unsent is None or _STRENGTH[signal] > _STRENGTH[self.unsent]:
                self.unsent = signal
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # bound outside a run: the first call in one reports
            self.unsent = signal
            return
        self.sending = loop.create_task(self._report(signal))

    async def _report(self, signal: str | None) -> None:
        while signal is not None:
            self.last_report = time.monotonic()
            answer = await self._call(signal)
            if answer is not None:
                self._take(*answer)
            elif signal == "throttle" or (signal == "round" and self.queueing()):
                super()._cut()  # alone, a process only cuts: n of them growing would overshoot
            signal, self.unsent = self.unsent, None

    async def _call(self, signal: str) -> tuple[float, int, int] | None:
        """The group's limit and size after ``signal``, and this process's share;
        ``None`` while Redis is down."""
        from redis.exceptions import RedisError

        policy = self.policy
        best = self.best if math.isfinite(self.best) else -1.0
        arguments: list[str | int] = [
            self.member,
            signal,
            repr(self.recent if self.recent is not None else -1.0),
            repr(best),
            policy.initial,
            policy.min,
            policy.max,
            repr(policy.tolerance),
            repr(EXPIRY_S),
            self.limit.statistics().in_use,
        ]
        try:
            answer: Any = await self.script(keys=self.keys, args=arguments)
            group_limit, size, share = float(answer[0]), int(answer[1]), int(answer[2])
        except (RedisError, OSError, ValueError, TypeError, IndexError) as exc:
            if not self.down:
                self.down = True
                self.outages += 1
                _log.warning(
                    "headrace concurrency: Redis at %s is not answering (%s); this process "
                    "keeps its share of the limit and moves it alone until it is back",
                    self.shown,
                    scrub_text(str(exc))[:200],
                )
            return None
        if self.down:
            self.down = False
            _log.warning("headrace concurrency: Redis at %s answers again", self.shown)
        return group_limit, size, share

    def _take(self, group_limit: float, size: int, share: int) -> None:
        """Hold this process's share of the group's limit."""
        self.group_limit, self.group_size = group_limit, size
        share = max(1, share)
        if share != self.limit.limit:
            self.limit.set_limit(share)
            self.changes += 1

    async def close(self) -> None:
        """Leave the group (the others take this share at their next report)."""
        if self.sending is not None:
            await self.sending
        if not self.down:
            await self._call("leave")
        await self.client.aclose()
