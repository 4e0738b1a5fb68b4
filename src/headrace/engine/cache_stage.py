"""The call chain's cache stage: a cached step in one run looks up, joins identical
calls in flight (single-flight), calls, and stores."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..cache.envelope import Declared, EncodeError, decode, encode
from ..cache.keys import timestamp_field
from ..cache.stats import CacheStats
from ..cache.tiers import Tier
from ..errors import StepFailed

if TYPE_CHECKING:
    from .._types import Handler
    from ..cache import Cache
    from .context import RunContext

__all__ = ["cached"]

_MISS = object()
_log = logging.getLogger("headrace.cache")


def cached(
    handler: Handler,
    cache: Cache,
    *,
    name: str,
    fingerprint: str,
    ctx: RunContext,
    stats: CacheStats,
    output_type: Any = None,
) -> Handler:
    """Wrap a step's ``handler`` in ``cache`` for the run ``ctx``; entries are rebuilt
    only as classes found in ``output_type`` or the cache's ``types``."""
    declared = Declared(output_type, cache.types)
    tiers: list[Tier] = cache.open_tiers()
    for tier in tiers:
        if tier is not cache.memory:
            ctx.on_close_async(tier.close)
    prefix = cache.key_prefix(name, fingerprint)
    clock, ttl_s = cache.clock, cache.ttl_s
    in_flight: dict[str, asyncio.Future[Any]] = {}
    activity = ctx.activity

    async def count_outages() -> None:  # when the run ends: Redis counts its own outages
        stats.tiers_down += sum(getattr(tier, "outages", 0) for tier in tiers)

    ctx.on_close_async(count_outages)

    async def lookup(key: str) -> Any:
        now = clock()
        for position, tier in enumerate(tiers):
            data = await tier.get(key, now)
            if data is None:
                continue
            try:
                value = decode(data, declared)
            except (LookupError, ValueError) as exc:
                if not stats.unreadable:
                    _log.warning(
                        "headrace cache: step %r: an entry in the %s tier is not read back (%s); "
                        "it counts as a miss",
                        name,
                        tier.name,
                        str(exc)[:200],
                    )
                stats.unreadable += 1
                return _MISS
            stats.hits[tier.name] = stats.hits.get(tier.name, 0) + 1
            if position:
                entry = (key, name, fingerprint, data, None if ttl_s is None else now + ttl_s)
                for faster in tiers[:position]:
                    await faster.put(entry)
                    stats.backfills += 1
            return value
        return _MISS

    async def store(key: str, value: Any) -> None:
        try:
            data = encode(value, declared)
        except EncodeError as exc:
            raise StepFailed(
                name,
                EncodeError(
                    f"step {name!r} has a cache, but its output cannot be stored in it: {exc}; "
                    "return JSON-like data, a Pydantic model or a dataclass, or drop cache="
                ),
            ) from None
        now = clock()
        entry = (key, name, fingerprint, data, None if ttl_s is None else now + ttl_s)
        for tier in tiers:
            try:
                await tier.put(entry)
            except OSError as exc:  # the file tier failed: a warning, never a failed item
                stats.tiers_down += 1
                _log.warning("headrace cache: %s", exc)
        stats.stored += 1
        stats.bytes += len(data)

    async def handle(value: Any) -> Any:
        try:
            key = cache.key_of(prefix, value)
        except TypeError as exc:
            raise StepFailed(name, exc) from exc
        found = await lookup(key)
        if found is not _MISS:
            return found
        waiting = in_flight.get(key)
        if waiting is not None:
            stats.joins += 1
            activity.leave()  # waiting on another item's call, as a batcher's waiter does
            try:
                return await asyncio.shield(waiting)
            except StepFailed as failure:
                raise StepFailed(failure.step, failure.cause, attempts=failure.attempts) from None
            finally:
                activity.enter()
        stats.misses += 1
        if stats.misses <= 3 and stats.timestamp_field is None:
            stats.timestamp_field = timestamp_field(cache.material(value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        in_flight[key] = future
        try:
            out = await handler(value)
            await store(key, out)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # marked seen: joiners, if any, re-raise it
            raise
        finally:
            del in_flight[key]
        future.set_result(out)
        return out

    return handle
