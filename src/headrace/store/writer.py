"""The writer of a durable run: commits outputs and outcomes together, in batches.

Lanes hand each finished item to the writer and go on; one writer task gathers
them and, every ``flush_items`` items or ``flush_interval_s`` seconds, writes the
outputs to the sink durably and then records the outcomes, the new watermark and
the sink's state in one run-store transaction, off the event loop. If the
writer falls ``max_pending`` items behind, lanes wait: memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Awaitable
from typing import Any

from ..errors import StorageError
from ..io.records import DurableSink, encode_json
from .lease import BEAT_S
from .run_store import DeadRow, Row, RunStore

_log = logging.getLogger("headrace.run")

__all__ = ["DurableWriter", "chain_key"]


class DurableWriter:
    """Commits finished items of one session of a durable run.

    Args:
        store: the run store; ``None`` writes the sink alone (a run without ``run_dir``).
        sink: the durable sink, already opened at the committed state.
        session: this session's number (recorded with each item).
        finished_above: index -> key of the items at or above the watermark that are
            already finished.
        replace: rows of retried dead letters (and of items rerun) replace their
            earlier rows.
        position: the position of the sink's next record (each output's is recorded
            with it); ``None`` records none (a run whose positions are not known).
    """

    def __init__(
        self,
        store: RunStore | None,
        sink: DurableSink,
        *,
        session: int,
        finished_above: dict[int, str],
        max_pending: int = 20_000,
        replace: bool = False,
        position: int | None = None,
    ) -> None:
        self._store = store
        self._sink = sink
        self._session = session
        self._watermark = store.watermark() if store is not None else 0
        self._digest = store.key_digest() if store is not None else ""
        self._finished_above = finished_above
        self._flush_items = sink.flush_items
        self._interval = sink.flush_interval_s
        self._max_pending = max(max_pending, 2 * sink.flush_items)
        self._replace = replace
        self._position = position
        self._items: list[Row] = []
        self._dead: list[DeadRow] = []
        self._records: list[Any] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._commit_lock = threading.Lock()
        self._beaten = time.monotonic()
        self.commits = 0
        self.busy_s = 0.0  # time spent writing the sink and committing
        self._blocked_since: float | None = None
        self._blocked_s = 0.0

    @property
    def blocked_s(self) -> float:
        """How long lanes have waited, in all, for the writer to catch up."""
        since = self._blocked_since
        return self._blocked_s + (time.perf_counter() - since if since is not None else 0.0)

    def output(self, index: int, key: str, record: Any) -> Awaitable[Any] | None:
        """An item finished with an output (already encoded by the sink).

        Returns something to await only when the writer is too far behind.
        """
        self._records.append(record)
        position = self._position
        if position is not None:
            self._position = position + 1
        return self._add((index, key, "done", position))

    def dead(
        self,
        index: int,
        key: str,
        *,
        step: str,
        error_type: str,
        message: str,
        attempts: int,
        item: str | None,
    ) -> Awaitable[Any] | None:
        """An item failed."""
        self._dead.append((index, step, error_type, message, attempts, item))
        return self._add((index, key, "dead", None))

    def filtered(self, index: int, key: str) -> Awaitable[Any] | None:
        """An item was dropped by a step."""
        return self._add((index, key, "filtered", None))

    def duplicate(self, index: int, key: str) -> Awaitable[Any] | None:
        """A record repeated an earlier key and was dropped (``duplicates="first"``)."""
        return self._add((index, key, "duplicate", None))

    def _add(self, row: Row) -> Awaitable[Any] | None:
        items = self._items
        items.append(row)
        if len(items) >= self._flush_items:
            self._wake.set()
            if len(items) >= self._max_pending:
                if self._blocked_since is None:
                    self._blocked_since = time.perf_counter()
                self._room.clear()
                return self._room.wait()
        return None

    async def run(self) -> None:
        """Commit batches until :meth:`close` is called and everything is committed."""
        while True:
            with contextlib.suppress(TimeoutError):  # commit on time, or sooner when woken
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if self._closing and not self._items:
                return
            if self._store is not None and time.monotonic() - self._beaten > BEAT_S:
                await asyncio.to_thread(self._beat)  # idle: keep the lease alive

    async def fence(self) -> None:
        """Renew the session's lease now, before an act no commit can take back (a
        provider's batch created): raises when another session took the run over.

        Raises:
            LeaseLost: this session no longer holds its run.
        """
        if self._store is not None:
            await asyncio.to_thread(self._beat)

    def _beat(self) -> None:
        with self._commit_lock:
            assert self._store is not None
            self._store.heartbeat()
            self._beaten = time.monotonic()

    def close(self) -> None:
        """Ask the writer to commit what is left and stop."""
        self._closing = True
        self._wake.set()

    async def _flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        dead, self._dead = self._dead, []
        records, self._records = self._records, []
        self._room.set()
        if self._blocked_since is not None:
            self._blocked_s += time.perf_counter() - self._blocked_since
            self._blocked_since = None
        started = time.perf_counter()
        await asyncio.to_thread(self._commit, items, dead, records)
        self.busy_s += time.perf_counter() - started
        self.commits += 1

    def _commit(self, items: list[Row], dead: list[DeadRow], records: list[Any]) -> None:
        with self._commit_lock:
            self._commit_locked(items, dead, records)

    def _commit_locked(self, items: list[Row], dead: list[DeadRow], records: list[Any]) -> None:
        finished = self._finished_above
        mark = self._watermark
        finished.update((row[0], row[1]) for row in items if row[0] >= mark)
        digest = self._digest
        while mark in finished:
            digest = chain_key(digest, finished.pop(mark))
            mark += 1
        self._watermark, self._digest = mark, digest
        journal = None
        if self._store is not None and self._sink.keeps_journal:
            journal = encode_json(
                {
                    "rows": items,
                    "dead": dead,
                    "watermark": mark,
                    "key_digest": digest,
                    "session": self._session,
                    "replace": self._replace,
                }
            )
        if self._store is not None:  # renew the lease, and stop before writing if it was lost
            self._store.heartbeat()
            self._beaten = time.monotonic()
        try:
            state = self._sink.write(records, journal)
        except OSError as exc:  # a full disk, a lost mount: one line, and the run resumes
            raise StorageError.writing(self._sink.describe().get("path", "the sink"), exc) from exc
        if self._store is not None:
            self._store.commit(
                items,
                dead,
                watermark=mark,
                key_digest=digest,
                sink_state=state,
                session=self._session,
                replace=self._replace,
            )

    async def sample(self, seq: int, t: float, data: dict[str, Any], *, thin: bool) -> None:
        """Write one row of the run's time series (and thin the session's rows first if
        asked), off the event loop, between commits."""
        if self._store is not None:
            await asyncio.to_thread(self._sample, seq, t, data, thin)

    def _sample(self, seq: int, t: float, data: dict[str, Any], thin: bool) -> None:
        assert self._store is not None
        with self._commit_lock:
            if thin:
                self._store.thin_samples(self._session)
            self._store.record_sample(self._session, seq, t, data)

    def wait_idle(self) -> None:
        """Block until no commit is running.

        A cancelled run cancels the writer's coroutine, but the thread doing a
        commit finishes it; the store and sink must not be closed under it. What
        was never committed is dropped with the writer and redone on resume.
        """
        self._commit_lock.acquire()
        self._commit_lock.release()


def chain_key(digest: str, key: str) -> str:
    """Fold one more key into the digest of the keys below the watermark, in source order.

    A resume folds the keys it skips and compares: a source edited anywhere
    below the watermark is refused instead of silently skipped.
    """
    # a CRC continues from its last value: the stored digest is the running checksum of
    # every key below the watermark (detects edits; it is not meant to resist forgery)
    return str(zlib.crc32((key + "\x00").encode(), int(digest or 0)))
