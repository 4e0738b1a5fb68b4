"""Where cached values live: memory (LRU with a size bound and TTL), SQLite on disk
(one file per project, shared by every run and process), Redis (shared between
machines).

Every tier stores envelope bytes under a key, with an expiry time (``None``:
none). A tier that fails (Redis restarted, a locked file) reports a miss and a
warning, never a failed item, and is tried again after a short pause.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..services.secrecy import scrub_text, scrub_url

__all__ = ["MemoryTier", "RedisTier", "SqliteTier", "Tier", "default_path"]

_log = logging.getLogger("headrace.cache")
Entry = tuple[str, str, str, bytes, float | None]
"""What is written: key, step name, fingerprint, value, expiry (epoch seconds)."""


def default_path() -> Path:
    """``$HEADRACE_CACHE_DIR/cache.sqlite``, else ``.headrace/cache.sqlite`` here."""
    root = os.environ.get("HEADRACE_CACHE_DIR")
    return (Path(root) if root else Path.cwd() / ".headrace") / "cache.sqlite"


class Tier(Protocol):
    """One level of a cache."""

    name: str

    async def get(self, key: str, now: float) -> bytes | None:
        """The value under ``key`` if it is there and not expired at ``now``."""

    async def put(self, entry: Entry) -> None:
        """Store one entry (a write may be batched; reads see it at once)."""

    async def close(self) -> None:
        """Flush what is pending and let go of connections."""


class MemoryTier:
    """An LRU of at most ``max_items`` entries, kept by the :class:`~headrace.cache.Cache`
    object, so every run in the process shares it."""

    name = "memory"

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled empty: a process the cache is sent to (a Ray worker) fills its own
        memory tier, the entries of this one stay here."""
        return (MemoryTier, (self.max_items,))

    async def get(self, key: str, now: float) -> bytes | None:
        found = self.entries.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= now:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return value

    async def put(self, entry: Entry) -> None:
        key, _, _, value, expires = entry
        self.entries[key] = (value, expires)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_items:
            self.entries.popitem(last=False)

    async def close(self) -> None:
        """Nothing to let go of: the entries stay for the next run in this process."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    value BLOB NOT NULL,
    created REAL NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS fingerprints (
    step TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    last_used REAL NOT NULL,
    PRIMARY KEY (step, fingerprint)
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the cache file (created with its tables if new), in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


class SqliteTier:
    """The on-disk tier: reads on the event loop (a primary-key lookup, microseconds),
    writes batched by a writer thread in one transaction per batch."""

    name = "sqlite"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.reader = connect(path)
        self.pending: dict[str, tuple[bytes, float | None]] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue[Entry | None] = queue.Queue()
        self.failed: BaseException | None = None
        self.writer = threading.Thread(target=self._write_loop, name="headrace-cache", daemon=True)
        self.writer.start()
        self.used: set[tuple[str, str]] = set()

    async def get(self, key: str, now: float) -> bytes | None:
        with self.lock:
            found = self.pending.get(key)
        if found is None:
            row = self.reader.execute(
                "SELECT value, expires FROM entries WHERE key = ?", (key,)
            ).fetchone()
            found = (bytes(row[0]), row[1]) if row is not None else None
        if found is None or (found[1] is not None and found[1] <= now):
            return None
        return found[0]

    async def put(self, entry: Entry) -> None:
        if self.failed is not None:
            raise OSError(f"the cache file {self.path} cannot be written: {self.failed}")
        with self.lock:
            self.pending[entry[0]] = (entry[3], entry[4])
        self.queue.put(entry)

    def _write_loop(self) -> None:
        db = connect(self.path)
        try:
            done = False
            while not done:
                batch = [self.queue.get()]
                while len(batch) < 1000:
                    try:
                        batch.append(self.queue.get(timeout=0.02))
                    except queue.Empty:
                        break
                done = batch[-1] is None
                entries = [e for e in batch if e is not None]
                if entries:
                    self._write(db, entries)
        except Exception as exc:  # noted; the next put() reports it, reads go on
            self.failed = exc
            _log.warning("headrace cache: writing %s failed: %s", self.path, exc)
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, entries: list[Entry]) -> None:
        now = self.clock()
        used = {(e[1], e[2]) for e in entries} - self.used
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR REPLACE INTO entries (key, step, fingerprint, value, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(k, s, f, v, now, x) for k, s, f, v, x in entries],
        )
        db.executemany(
            "INSERT OR REPLACE INTO fingerprints (step, fingerprint, last_used) VALUES (?, ?, ?)",
            [(s, f, now) for s, f in used],
        )
        db.execute("COMMIT")
        self.used |= used
        with self.lock:
            for key, *_ in entries:
                self.pending.pop(key, None)

    async def close(self) -> None:
        import asyncio

        self.queue.put(None)
        await asyncio.to_thread(self.writer.join)
        self.reader.close()


class RedisTier:
    """The shared tier: one Redis key per entry, with its TTL; JSON envelopes only.

    While Redis does not answer, lookups are misses and writes are dropped, with
    one warning per outage; it is tried again every ``retry_s``.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float | None,
        *,
        prefix: str = "headrace:cache:",
        retry_s: float = 0.25,
    ) -> None:
        import redis.asyncio as redis

        self.url = url
        self.shown = scrub_url(url)  # for messages: never the password
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_s = retry_s
        self.client: Any = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.down_until = 0.0
        self.outages = 0

    def _available(self) -> bool:
        return time.monotonic() >= self.down_until

    def _failed(self, exc: BaseException) -> None:
        if self.down_until == 0.0:
            self.outages += 1
            _log.warning(
                "headrace cache: Redis at %s is not answering (%s); its lookups are misses "
                "until it is back",
                self.shown,
                scrub_text(str(exc)),
            )
        self.down_until = time.monotonic() + self.retry_s

    def _answered(self) -> None:
        if self.down_until:
            _log.warning("headrace cache: Redis at %s answers again", self.shown)
            self.down_until = 0.0

    async def get(self, key: str, now: float) -> bytes | None:
        if not self._available():
            return None
        try:
            value = await self.client.get(self.prefix + key)
        except Exception as exc:
            self._failed(exc)
            return None
        self._answered()
        return bytes(value) if value is not None else None

    async def put(self, entry: Entry) -> None:
        if not self._available():
            return
        key, _, _, value, _ = entry
        ttl = None if self.ttl_s is None else max(1, round(self.ttl_s))
        try:
            await self.client.set(self.prefix + key, value, ex=ttl)
        except Exception as exc:
            self._failed(exc)
            return
        self._answered()

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception as exc:  # closing a connection to a server that went away
            _log.debug("headrace cache: closing Redis: %s", exc)
