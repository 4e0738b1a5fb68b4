"""The provider's batch queue limit for one model: the input tokens it holds enqueued in
unfinished batches (OpenAI fails a batch past it at validation, ``token_limit_exceeded``).

It is learned from that refusal: the provider held the batches it had accepted, but
not the refused one beside them, so the limit is taken as what those held (half the
refused batch when none was in flight). Kept in this process; when the client's
rate limit is shared through Redis (``hr.Rate(shared=...)``), the learned limit is
shared there too, under the rate's key and the model, so that every process of a
cluster sizes its batches to it. A value read back from Redis is untrusted: one
that is not a positive whole number is ignored (with a warning), and a Redis that
does not answer leaves the process with what it learned itself.

Where the limit is shared, so is what it holds: each process *holds* the input
tokens of its unfinished batches in Redis (a hash, one field a batch, each with
the time it lapses: the completion window and an hour, by when the provider has
ended it), and a batch is held only if it fits beside every process's, atomically
(a Lua script), before it is created. A batch that does not fit waits for room.
A process that dies leaves its holds until they lapse: its batches are still in
the provider's queue until they end. A damaged hold is left out of the sum.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from ...services.redis_link import redis_script
from ...services.secrecy import scrub_text
from ..tokens import prompt_tokens
from .ledger import Intent
from .settings import MAX_FILE_BYTES

__all__ = ["QueueLimit", "fitting"]

_log = logging.getLogger("headrace.llm.batch")

# keep the lower of the stored limit and the one learned; a stored value that is not a
# positive number is replaced
_LOWER = """
local held = tonumber(redis.call('GET', KEYS[1]))
if (not held) or held < 1 or held > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""


# hold ARGV[3] tokens for batch ARGV[2] if they fit beside every other process's live
# holds and this process's own in flight (ARGV[4]) within the limit ARGV[1] (or nothing
# else is held); ARGV[5] is now, ARGV[6] when the hold lapses, ARGV[7] this process.
# A hold is "tokens:lapses:process"; one that does not read so is left out.
_HOLD = """
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local tokens, lapses, member = string.match(fields[i + 1], '^(%d+):([%d%.]+):(%w+)$')
  if tokens and tonumber(lapses) and tonumber(lapses) > tonumber(ARGV[5]) then
    if member ~= ARGV[7] then
      others = others + tonumber(tokens)
    end
  elseif tokens then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
local own, want, limit = tonumber(ARGV[4]), tonumber(ARGV[3]), tonumber(ARGV[1])
if want == 0 then
  return others
end
if ARGV[8] == '1' or others + own + want <= limit or others + own == 0 then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ':' .. ARGV[6] .. ':' .. ARGV[7])
  return -1 - others
end
return others
"""

HOLD_MARGIN_S = 3600.0
"""How long past its completion window a batch's hold lapses."""


class QueueLimit:
    """One step's learned batch queue limit (``limit``; ``None`` until learned), and,
    where it is shared, the holds of every process's unfinished batches."""

    def __init__(self, model: str, shared: str | None, key: str) -> None:
        self.limit: int | None = None
        self.key = f"headrace:batch-queue:{key}:{model}"
        self.held_key = f"{self.key}:held"
        self.member = uuid.uuid4().hex  # this process, in the holds
        self.redis: tuple[Any, Any] | None = None
        self.holding: Any = None
        if shared is not None:
            self.redis = redis_script(shared, _LOWER, "a batch tier with a shared rate limit")
            self.holding = self.redis[0].register_script(_HOLD)

    async def hold(
        self, intent_id: str, tokens: int, own: int, window_s: float, *, adopt: bool = False
    ) -> tuple[bool, int]:
        """Hold a batch's ``tokens`` beside every process's unfinished batches (``own``:
        this process's others): whether it was held, and the tokens the other processes
        hold (no tokens: only a look at those). ``adopt`` holds it whatever the room (a
        batch already at the provider, resumed). Without a shared limit, or with Redis
        away, this process's own count stands and the batch goes."""
        if self.holding is None or (self.limit is None and not adopt):
            return True, 0
        now = time.time()
        args = [self.limit or 0, intent_id, tokens, own, now, now + window_s + HOLD_MARGIN_S]
        args += [self.member, "1" if adopt else "0"]
        try:
            answer = int(await self.holding(keys=[self.held_key], args=args))
        except Exception as exc:  # Redis away: sized by what this process knows
            _log.debug("headrace: batch queue holds in Redis: %s", scrub_text(str(exc)))
            return True, 0
        return (True, -1 - answer) if answer < 0 else (False, answer)

    async def release(self, intent_id: str) -> None:
        """Give back the hold of a batch that ended."""
        if self.redis is None:
            return
        try:
            await self.redis[0].hdel(self.held_key, intent_id)
        except Exception as exc:  # it lapses on its own
            _log.debug("headrace: batch queue holds in Redis: %s", scrub_text(str(exc)))

    async def current(self) -> int | None:
        """The limit, the shared one included (read before each batch)."""
        if self.redis is None:
            return self.limit
        client, _ = self.redis
        try:
            raw = await client.get(self.key)
        except Exception as exc:  # Redis away: this process's own knowledge stands
            _log.debug("headrace: batch queue limit in Redis: %s", scrub_text(str(exc)))
            return self.limit
        if raw is not None:
            try:
                shared = int(raw)
                if shared < 1:
                    raise ValueError(shared)
            except ValueError:
                _log.warning(
                    "headrace: ignoring a damaged batch queue limit in Redis (%s)", self.key
                )
                return self.limit
            self.limit = shared if self.limit is None else min(self.limit, shared)
        return self.limit

    async def room(self, in_flight: int) -> tuple[int, int] | None:
        """The limit and the input tokens left in the queue beside ``in_flight`` (this
        process's unfinished batches and the other processes' holds); ``None``: no limit
        is known."""
        limit = await self.current()
        return None if limit is None else (limit, limit - in_flight)

    async def refused(self, batch: Intent, others: Iterable[Intent]) -> int:
        """Learn from ``batch``'s refusal beside the ``others``; the limit now."""
        held = sum(
            i.tokens
            for i in others
            if i.state == "submitted" and i.status not in ("failed", "validating")
        )
        learned = held if held else max(1, batch.tokens // 2)
        self.limit = learned if self.limit is None else min(self.limit, learned)
        if self.redis is not None:
            _, lower = self.redis
            try:
                await lower(keys=[self.key], args=[self.limit])
            except Exception as exc:  # shared later, or never: this process knows it
                _log.debug("headrace: batch queue limit in Redis: %s", scrub_text(str(exc)))
        return self.limit

    async def close(self) -> None:
        """Close the Redis connection, if any."""
        if self.redis is not None:
            await self.redis[0].aclose()


def fitting(
    pending: dict[str, dict[str, Any]], most: int, room: tuple[int, int] | None
) -> list[str]:
    """The pending requests (name to body) the next batch takes: at most ``most``, a file
    of at most :data:`MAX_FILE_BYTES`, and within the queue's ``room`` (the limit, and
    the tokens left beside the batches in flight: see :meth:`QueueLimit.room`). A batch
    alone in the queue takes its first request even when it passes the limit."""
    names = list(pending)[:most]
    size = 0
    for index, name in enumerate(names):  # a batch file is at most MAX_FILE_BYTES
        size += len(orjson.dumps(pending[name])) + 100
        if size > MAX_FILE_BYTES and index:
            names = names[:index]
            break
    if room is None:
        return names
    limit, left = room
    taken: list[str] = []
    used = 0
    for name in names:
        tokens = prompt_tokens(pending[name])
        if used + tokens > left and (taken or left < limit):
            break
        taken.append(name)
        used += tokens
    return taken
