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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ...services.redis_link import redis_script
from ...services.secrecy import scrub_text
from .ledger import Intent

__all__ = ["QueueLimit"]

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


class QueueLimit:
    """One step's learned batch queue limit (``limit``; ``None`` until learned)."""

    def __init__(self, model: str, shared: str | None, key: str) -> None:
        self.limit: int | None = None
        self.key = f"headrace:batch-queue:{key}:{model}"
        self.redis: tuple[Any, Any] | None = None
        if shared is not None:
            self.redis = redis_script(shared, _LOWER, "a batch tier with a shared rate limit")

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
