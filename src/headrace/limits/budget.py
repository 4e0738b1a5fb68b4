"""A run's spending limit: US dollars and tokens, checked before every LLM call.

A call reserves what it is expected to cost before it is sent and settles the
real cost from the provider's ``usage`` afterwards. Once what has been spent
plus what is reserved by calls in flight reaches a limit, no further call is
sent: the item that wanted it is left unfinished (:class:`~headrace.errors.BudgetExhausted`),
the run stops reading its source, lets the calls in flight finish, and ends
cleanly. A durable run is then resumed like any interrupted run; the resumed
run has the budget it is given, not what was left of the last one.

``shared="redis://..."`` keeps the spending in Redis (:class:`SharedSpend`), so
every process of a run (the workers of a run on Ray) spends from one budget:
each reservation is one atomic script that checks the limits and holds the
call's expected cost, each answer one more that settles it. A Redis that does
not answer cannot say what is left, so the call is refused and the run stops,
resumable, as when the budget is spent: a budget is never overspent for an
outage. The reservations of a worker that was killed mid-call stay held until
the session ends (the budget errs on the side of spending less).

Redis only coordinates. Each process keeps what it has spent and what it holds,
and adds them to each record it spends from, once: a record that vanished (a
``FLUSHALL``, a restart without persistence) is rebuilt, before each process's
next call goes out, from what every process of the run has spent, instead of
starting again from zero. What Redis holds is untrusted: a spend that is not a
finite, non-negative number stops the run, resumable.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import BudgetExhausted, PipelineError, RunStopped, StepFailed
from ..services.redis_link import redis_script
from ..services.secrecy import scrub_text, scrub_url
from ..values.checks import positive_number

_log = logging.getLogger("headrace.run")

__all__ = ["Budget", "RunSpend", "SharedSpend", "Spend", "run_stopped", "spend_for"]


@dataclass(frozen=True, slots=True)
class Budget:
    """The most one run may spend on LLM calls: ``hr.run(..., budget=hr.Budget(usd=5))``.

    Args:
        usd: US dollars, priced by each model's :class:`~headrace.llm.prices.Price`.
        tokens: prompt plus completion tokens, over all models.
        shared: ``"redis://host:port/db"`` to keep the spending in Redis, one budget
            for every process of the run (needed for a run with ``backend=``).
        key: with ``shared``, a name for the budget: every run and process giving
            it spends from one budget, across sessions (a team's budget for the
            day). Default: one budget for each session of the run.

    Raises:
        PipelineError: neither limit, or one that is not positive.
    """

    usd: float | None = None
    tokens: int | None = None
    shared: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise PipelineError("Budget needs usd=, tokens= or both")
        if self.shared is not None and not self.shared.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise PipelineError(f"Budget shared= takes a redis:// URL, got {self.shared!r}")
        if self.key is not None and self.shared is None:
            raise PipelineError("Budget key= names a budget kept in Redis: give shared= too")
        for name in ("usd", "tokens"):
            value = getattr(self, name)
            if value is not None:
                positive_number(value, f"Budget {name}")


class Spend:
    """What one run has spent against its :class:`Budget`, and what calls in flight hold."""

    __slots__ = ("budget", "reserved_tokens", "reserved_usd", "tokens", "usd")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usd = 0.0
        self.tokens = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0

    def reserve(self, tokens: int, usd: float) -> None:
        """Hold a call's expected cost; refuse it once the budget is reached.

        Raises:
            BudgetExhausted: spent plus reserved has reached a limit.
        """
        budget = self.budget
        if budget.usd is not None and self.usd + self.reserved_usd >= budget.usd:
            self._stop(f"the budget of ${budget.usd:g} is spent (${self.usd:.4f} so far)")
        if budget.tokens is not None and self.tokens + self.reserved_tokens >= budget.tokens:
            self._stop(f"the budget of {budget.tokens:,} tokens is spent ({self.tokens:,} so far)")
        self.reserved_tokens += tokens
        self.reserved_usd += usd

    def settle(self, reserved_tokens: int, reserved_usd: float, tokens: int, usd: float) -> None:
        """A call ended: drop its reservation and add what it really cost."""
        self.reserved_tokens -= reserved_tokens
        self.reserved_usd -= reserved_usd
        self.tokens += tokens
        self.usd += usd

    def _stop(self, reason: str) -> None:
        raise BudgetExhausted(reason)


_SCRIPT = """
local v = redis.call('HMGET', KEYS[1], 'usd', 'tokens', 'reserved_usd', 'reserved_tokens', 'since')
local names = {'usd', 'tokens', 'reserved_usd', 'reserved_tokens'}
local n = {}
for i = 1, 4 do
  local x = 0
  if v[i] ~= false then x = tonumber(v[i]) end
  -- untrusted: a spend is a finite number, never below zero (a float's rounding aside)
  if x == nil or x ~= x or x == math.huge or x == -math.huge or x < -1e-6 then
    return 'invalid ' .. names[i]
  end
  n[i] = x
end
local since = v[5]
if since == false then
  -- no record: a new budget, or one lost (a flush, a restart without persistence)
  since = ARGV[11]
  redis.call('HSET', KEYS[1], 'since', since)
end
-- each process adds what it spent and holds, once to each record: a lost record is
-- rebuilt by every process that spends from it, before its next call goes out
local mine = 'm:' .. ARGV[6]
if redis.call('HGET', KEYS[1], mine) ~= since then
  n[1] = n[1] + tonumber(ARGV[8])
  n[2] = n[2] + tonumber(ARGV[7])
  n[3] = n[3] + tonumber(ARGV[10])
  n[4] = n[4] + tonumber(ARGV[9])
  redis.call('HSET', KEYS[1], mine, since)
end
local usd, tokens, reserved_usd, reserved_tokens = n[1], n[2], n[3], n[4]
local answer = 'ok'
if ARGV[1] == 'reserve' then
  local most_usd, most_tokens = tonumber(ARGV[4]), tonumber(ARGV[5])
  if most_usd >= 0 and usd + reserved_usd >= most_usd then answer = 'usd ' .. usd
  elseif most_tokens >= 0 and tokens + reserved_tokens >= most_tokens then
    answer = 'tokens ' .. tokens
  else
    reserved_tokens = reserved_tokens + tonumber(ARGV[2])
    reserved_usd = reserved_usd + tonumber(ARGV[3])
  end
else
  reserved_tokens = math.max(0, reserved_tokens - tonumber(ARGV[2]))
  reserved_usd = math.max(0, reserved_usd - tonumber(ARGV[3]))
  tokens = tokens + tonumber(ARGV[4])
  usd = usd + tonumber(ARGV[5])
end
redis.call('HSET', KEYS[1], 'usd', string.format('%.17g', usd),
  'tokens', string.format('%.17g', tokens),
  'reserved_usd', string.format('%.17g', reserved_usd),
  'reserved_tokens', string.format('%.17g', reserved_tokens))
redis.call('PEXPIRE', KEYS[1], 604800000)
return answer
"""


class SharedSpend:
    """What every process of a run has spent against its :class:`Budget`, kept in Redis
    under ``key`` (see the module's notes). Same verbs as :class:`Spend`, awaited."""

    def __init__(self, budget: Budget, key: str) -> None:
        assert budget.shared is not None
        self.budget = budget
        self.key = f"headrace:budget:{key}"
        self.shown = scrub_url(budget.shared)
        self.client, self.script = redis_script(
            budget.shared, _SCRIPT, "hr.Budget(shared='redis://...')"
        )
        # what this process spent and holds: what it adds to a record rebuilt after a loss
        self.member = uuid.uuid4().hex
        self.spent_tokens = self.held_tokens = 0
        self.spent_usd = self.held_usd = 0.0

    async def _call(self, *args: str | int | float) -> str:
        mine = [self.member, self.spent_tokens, repr(self.spent_usd)]
        mine += [self.held_tokens, repr(self.held_usd), uuid.uuid4().hex]
        answer: Any = await self.script(keys=[self.key], args=[*args, *mine])
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    async def reserve(self, tokens: int, usd: float) -> None:
        """Hold a call's expected cost in Redis; refuse it once the budget is reached.

        Raises:
            BudgetExhausted: spent plus reserved (by every process) has reached a
                limit, or Redis does not answer.
        """
        from redis.exceptions import RedisError

        budget = self.budget
        most_usd = -1.0 if budget.usd is None else budget.usd
        most_tokens = -1 if budget.tokens is None else budget.tokens
        try:
            answer = await self._call("reserve", tokens, repr(usd), repr(most_usd), most_tokens)
        except (RedisError, OSError) as exc:
            raise BudgetExhausted(
                f"the budget cannot be checked: Redis at {self.shown} is not answering "
                f"({scrub_text(str(exc))[:200]})"
            ) from None
        if answer.startswith("invalid "):
            raise BudgetExhausted(
                f"the shared budget's {answer.split()[1]} in Redis at {self.shown} "
                f"({self.key}) is not a spend (tampered?): no call is sent; the run stops, "
                "resumable"
            )
        if answer == "ok":
            self.held_tokens += tokens
            self.held_usd += usd
            return
        if answer.startswith("usd "):
            spent = float(answer.split()[1])
            raise BudgetExhausted(
                f"the budget of ${budget.usd:g} is spent (${spent:.4f} so far, all workers)"
            )
        if answer.startswith("tokens "):
            spent = int(float(answer.split()[1]))
            raise BudgetExhausted(
                f"the budget of {budget.tokens:,} tokens is spent ({spent:,} so far, all workers)"
            )

    async def settle(
        self, reserved_tokens: int, reserved_usd: float, tokens: int, usd: float
    ) -> None:
        """A call ended: drop its reservation and add what it really cost."""
        from redis.exceptions import RedisError

        try:
            answer = await self._call(
                "settle", reserved_tokens, repr(reserved_usd), tokens, repr(usd)
            )
        except (RedisError, OSError) as exc:
            # the reservation stays held: what is left looks smaller, never larger
            _log.warning(
                "headrace budget: Redis at %s did not take a call's cost (%s); its "
                "reservation stays held",
                self.shown,
                scrub_text(str(exc))[:200],
            )
            return
        if answer.startswith("invalid "):  # the next reservation stops the run
            _log.warning(
                "headrace budget: the shared budget's %s in Redis at %s is not a spend",
                answer.split()[1],
                self.shown,
            )
            return
        self.held_tokens = max(0, self.held_tokens - reserved_tokens)
        self.held_usd = max(0.0, self.held_usd - reserved_usd)
        self.spent_tokens += tokens
        self.spent_usd += usd

    async def spent(self) -> tuple[float, int]:
        """Dollars and tokens spent so far by every process."""
        usd, tokens = await self.client.hmget(self.key, ["usd", "tokens"])
        return float(usd or 0), int(float(tokens or 0))

    async def close(self) -> None:
        """Close the connection to Redis."""
        await self.client.aclose()


RunSpend = Spend | SharedSpend
"""What a run spends against its budget: in this process, or in Redis."""


def spend_for(budget: Budget | None) -> RunSpend | None:
    """The spending a run keeps against ``budget``: in this process, or in Redis
    (under the budget's ``key``, or one of this session's own)."""
    if budget is None:
        return None
    if budget.shared is None:
        return Spend(budget)
    return SharedSpend(budget, budget.key or f"session:{uuid.uuid4().hex}")


def run_stopped(failure: BaseException) -> RunStopped | None:
    """The reason, if any, that a failure is the run's and not the item's: a call refused
    by the run's budget, a provider down past its circuit's ``max_outage``."""
    error: BaseException | None = failure
    for _ in range(16):  # compositions wrap failures a few levels deep at most
        if error is None:
            return None
        if isinstance(error, RunStopped):
            return error
        error = error.cause if isinstance(error, StepFailed) else error.__cause__
    return None
