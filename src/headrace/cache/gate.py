"""A cached step in one run: look up, join identical calls in flight, call, store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StepFailed
from .envelope import Declared, EncodeError, decode, encode
from .keys import timestamp_field
from .tiers import Tier

if TYPE_CHECKING:
    from ..engine.runtime import Handler, RunContext
    from . import Cache

__all__ = ["CacheStats", "cached"]

_MISS = object()
_log = logging.getLogger("headrace.cache")


@dataclass(slots=True, eq=False)
class CacheStats:
    """One cached step's counts in one run (``metrics.step(name).cache``).

    Attributes:
        hits: lookups answered, by tier.
        misses: lookups no tier answered (the step was called).
        joins: items that waited for an identical call already in flight.
        backfills: entries copied into a faster tier after a hit in a slower one.
        stored: results written (once per result, whatever the number of tiers).
        bytes: the size of the results written.
        unreadable: entries found but not readable here (damaged, or naming a class
            the step did not declare); counted as misses, with one warning a run.
        tiers_down: outages of a tier that stopped answering (Redis).
        timestamp_field: a field of the key's material that looks like a moment in time
            (see :func:`~headrace.cache.keys.timestamp_field`), seen on the first misses.
    """

    hits: dict[str, int] = field(default_factory=dict)
    misses: int = 0
    joins: int = 0
    backfills: int = 0
    stored: int = 0
    bytes: int = 0
    unreadable: int = 0
    tiers_down: int = 0
    timestamp_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The counts as plain data."""
        return {
            "hits": dict(self.hits),
            "misses": self.misses,
            "joins": self.joins,
            "backfills": self.backfills,
            "stored": self.stored,
            "bytes": self.bytes,
            "unreadable": self.unreadable,
            "tiers_down": self.tiers_down,
            "timestamp_field": self.timestamp_field,
        }

    def summary(self) -> str:
        """One line for the run summary."""
        hits = ", ".join(f"{tier} {n:,}" for tier, n in self.hits.items()) or "none"
        line = (
            f"cache: hits {hits}; misses {self.misses:,}; joined {self.joins:,}; "
            f"back-filled {self.backfills:,}; stored {self.stored:,} ({self.bytes:,} bytes)"
        )
        if self.tiers_down:
            line += f"; a tier was down {self.tiers_down} time(s)"
        return line


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
