"""One learned limit for every process: :meth:`Rate.auto(shared=...)
<headrace.limits.rate.Rate.auto>` keeps what it learns in Redis.

The limit (requests and tokens a second, and whether headers or 429s taught it)
lives in one Redis hash next to the buckets. A process does not change it on
its own: what it learns (a limit read from headers, a 429 that said nothing, a
healthy second that may raise a 429-learned rate, its successes while nothing
is learned) rides along with its next call to the bucket script, which applies
it atomically on Redis's clock and answers with the limit in force. So:

- the first process to see ``x-ratelimit-limit-*`` headers sets the limit for
  all, and every other process stops pacing by its window of calls in flight at
  its next call;
- without headers, the first 429 sets the rate to what got through *across the
  cluster* in the last second (every process's successes are counted in Redis
  until then), and later 429s cut it by 15% at most once per burst, however many
  processes drew them;
- a healthy second raises a 429-learned rate by 2%, once, not once per process.

The hash expires a day after its last change: a provider's limit changes rarely,
and a new day's run starts by learning it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .bucket import TokenBucket
from .learning import Learner
from .pacing import LUA_STEP, RedisBuckets, bounded_wait

if TYPE_CHECKING:
    from .rate import Permit, Rate

__all__ = ["LearnedRedisBuckets", "SharedLearner"]

NONE = "-"  # an argument left out

_LUA = (
    LUA_STEP
    + """
local limit_key, ok_key = KEYS[3], KEYS[4]
local mode, headroom = ARGV[1], tonumber(ARGV[4])
missing_full = ARGV[12] == '1'
local held = redis.call('HMGET', limit_key, 'rq', 'tk', 'src', 'changed', 'cut')
-- untrusted: a limit that is not a finite, non-negative number is not known (0)
local function limit_of(x)
  local n = tonumber(x)
  if not finite(n) or n < 0 then return 0 end
  return n
end
local rq, tk, src = limit_of(held[1]), limit_of(held[2]), held[3] or ''
if src ~= 'headers' and src ~= '429s' then src = '' end
local changed, cut_at = tonumber(held[4]) or 0, tonumber(held[5]) or -1e18
if not finite(changed) then changed = 0 end
if not finite(cut_at) then cut_at = -1e18 end
local dirty = false
local sec = math.floor(now)
local function capacity(rate)
  local size = math.max(1, rate)
  return size - math.min(size / 2, rate * headroom)
end
if tonumber(ARGV[5]) > 0 then
  redis.call('INCRBY', ok_key .. ':' .. sec, ARGV[5])
  redis.call('EXPIRE', ok_key .. ':' .. sec, 5)
end
for i, kind in ipairs({'rq', 'tk'}) do
  local learned = ARGV[5 + i]
  if learned ~= '-' then
    local rate, level = tonumber(learned), ARGV[7 + i]
    local before = (kind == 'rq') and rq or tk
    if before == 0 and level ~= '-' then
      redis.call('HSET', KEYS[i], 'level', tostring(math.min(capacity(rate), tonumber(level))),
                 'at', tostring(now))
    end
    if kind == 'rq' then rq = rate else tk = rate end
    if src ~= 'headers' or before ~= rate then changed = now end
    src, dirty = 'headers', true
  end
end
if ARGV[10] == '1' and src ~= 'headers' then
  if rq == 0 then
    local last = tonumber(redis.call('GET', ok_key .. ':' .. (sec - 1)) or '0')
    local this = tonumber(redis.call('GET', ok_key .. ':' .. sec) or '0')
    rq = math.max(1, last * (1 - (now - sec)) + this)
    redis.call('HSET', KEYS[1], 'level', '0', 'at', tostring(now))
    src, cut_at, changed, dirty = '429s', now, now, true
  elseif now - cut_at > 1 / rq + 0.2 then
    rq = math.max(0.1, rq * 0.85)
    cut_at, changed, dirty = now, now, true
  end
end
if ARGV[11] == '1' and src == '429s' and now - changed >= 1 then
  rq, changed, dirty = rq * 1.02, now, true
end
if dirty then
  -- %.17g, not tostring's 14 digits: the limit read back is the limit written
  redis.call('HSET', limit_key, 'rq', string.format('%.17g', rq),
             'tk', string.format('%.17g', tk), 'src', src,
             'changed', tostring(now), 'cut', tostring(cut_at))
  redis.call('PEXPIRE', limit_key, 86400000)
end
local wait = 0
for i, rate in ipairs({rq, tk}) do
  if rate > 0 then
    local cap = capacity(rate)
    local ttl = math.floor((cap / rate + 60 + 1 / rate) * 1000)
    wait = math.max(wait, step(KEYS[i], rate, cap, tonumber(ARGV[1 + i]), mode, ttl))
  end
end
return string.format('%.17g %.17g %.17g %s', wait, rq, tk, src)
"""
)


class SharedLearner(Learner):
    """What one process learns of a shared limit, held until its next call to Redis
    carries it there; and the limit Redis answers with, applied here."""

    def __init__(self, rate: Rate) -> None:
        super().__init__(rate)
        self.learned: dict[str, tuple[float, float | None]] = {}
        self.cut_asked = False
        self.grow_asked = False
        self.successes_unsent = 0

    def success(self, now: float) -> None:
        super().success(now)
        if self.source is None:
            self.successes_unsent += 1

    def learn(self, headers: Mapping[str, str], permit: Permit | None) -> bool:
        readings = self.read(headers, permit)
        if readings:
            self.learned.update(readings)
            self.apply(readings)  # this process stops windowing at once
        return bool(readings)

    def cut(self) -> None:
        if self.source != "headers":
            self.cut_asked = True

    def grow(self) -> None:
        now = self.rate.clock()
        if self.source == "429s" and now - self.last_change >= 1.0:
            self.grow_asked = True
            self.last_change = now

    def take(self) -> list[str]:
        """The learning to send with the next call (arguments 5 to 11 of the script)."""
        learned = self.learned
        unsent: list[str] = [str(self.successes_unsent)]
        for kind in ("requests", "tokens"):
            unsent.append(repr(learned[kind][0]) if kind in learned else NONE)
        for kind in ("requests", "tokens"):
            level = learned[kind][1] if kind in learned else None
            unsent.append(NONE if level is None else repr(level))
        unsent += ["1" if self.cut_asked else "0", "1" if self.grow_asked else "0"]
        self.learned = {}
        self.cut_asked = self.grow_asked = False
        self.successes_unsent = 0
        return unsent

    def answered(self, requests: float, tokens: float, source: str) -> bool:
        """Apply the limit Redis holds; whether it changed here."""
        rate = self.rate
        changed = False
        for kind, per_second in (("requests", requests), ("tokens", tokens)):
            bucket = rate.local.requests if kind == "requests" else rate.local.tokens
            if per_second > 0 and (
                bucket is None or not math.isclose(bucket.rate, per_second, rel_tol=1e-9)
            ):
                (rate.set_requests if kind == "requests" else rate.set_tokens)(per_second)
                changed = True
        if source and source != self.source:
            self.source = source
            changed = True
        if changed:
            self.last_change = rate.clock()
            rate.wake()
        return changed


class LearnedRedisBuckets(RedisBuckets):
    """The buckets of a :meth:`Rate.auto(shared=...)` limit: their rates are the limit
    learned in Redis, which each call reads, and updates with this process's learning."""

    lua = _LUA

    def __init__(
        self, rate: Rate, learner: SharedLearner, on_outage: Callable[[], None] | None
    ) -> None:
        assert rate.shared is not None
        zero = (0.0, 0.0, 0.0, 0.0)  # no limit until Redis answers with the one learned
        super().__init__(rate.shared, rate.key, zero, rate.outage_share, rate.clock, on_outage)
        self.rate = rate
        self.learner = learner
        self.keys += [f"headrace:rate:{rate.key}:limit", f"headrace:rate:{rate.key}:ok"]

    def arguments(self, mode: str, requests: float, tokens: float) -> list[str | float]:
        learned = self.learner.take()
        return [mode, requests, tokens, self.rate.headroom_s, *learned, self.missing_full()]

    def answered(self, raw: bytes | str) -> float:
        text = raw.decode() if isinstance(raw, bytes) else raw
        wait, requests, tokens, *source = text.split(" ")
        if self.learner.answered(float(requests), float(tokens), source[0] if source else ""):
            self._follow(float(requests), float(tokens))
        return bounded_wait(wait)

    def _follow(self, requests: float, tokens: float) -> None:
        """Pace the fallback for an outage at its share of the limit now in force."""
        share = self.outage_share
        now = self.clock()
        for kind, per_second in (("requests", requests), ("tokens", tokens)):
            if per_second > 0:
                capacity = max(1.0, per_second) * share
                bucket = getattr(self.fallback, kind)
                if bucket is None:
                    setattr(self.fallback, kind, TokenBucket(per_second * share, capacity, now))
                else:
                    bucket.set_rate(per_second * share, capacity, now)
