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
import os
import threading
import time
import zlib
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal

import orjson

from .errors import HeadraceError, ResumeMismatch, StorageError
from .fingerprint import identity_changes
from .io.records import DurableSink, Recovered, encode_json
from .store import DeadRow, FinishedItem, Row, RunStore, StoreLocation
from .store.lease import BEAT_S

_log = logging.getLogger("headrace.run")

__all__ = ["DurableSession", "DurableWriter", "Mode"]

Mode = Literal["new", "resume", "auto", "fresh", "retry_dead"]
"""How a session meets what ``run_dir`` holds: ``new`` (refuse a run there),
``resume`` (need one), ``auto`` (resume one if there, else start), ``fresh``
(discard one if there, its output too, and start), ``retry_dead``."""
"""What a session does: start a run, resume it, or run its dead letters again."""


class DurableWriter:
    """Commits finished items of one session of a durable run.

    Args:
        store: the run store; ``None`` writes the sink alone (a run without ``run_dir``).
        sink: the durable sink, already opened at the committed state.
        session: this session's number (recorded with each item).
        finished_above: index -> key of the items at or above the watermark that are
            already finished.
        replace: rows of retried dead letters replace their earlier rows.
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

    def output(self, index: int, key: str, record: Any) -> Awaitable[Any] | None:
        """An item finished with an output (already encoded by the sink).

        Returns something to await only when the writer is too far behind.
        """
        self._records.append(record)
        return self._add((index, key, "done"))

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
        return self._add((index, key, "dead"))

    def filtered(self, index: int, key: str) -> Awaitable[Any] | None:
        """An item was dropped by a step."""
        return self._add((index, key, "filtered"))

    def duplicate(self, index: int, key: str) -> Awaitable[Any] | None:
        """A record repeated an earlier key and was dropped (``duplicates="first"``)."""
        return self._add((index, key, "duplicate"))

    def _add(self, row: Row) -> Awaitable[Any] | None:
        items = self._items
        items.append(row)
        if len(items) >= self._flush_items:
            self._wake.set()
            if len(items) >= self._max_pending:
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
        await asyncio.to_thread(self._commit, items, dead, records)
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

    def wait_idle(self) -> None:
        """Block until no commit is running.

        A cancelled run cancels the writer's coroutine, but the thread doing a
        commit finishes it; the store and sink must not be closed under it. What
        was never committed is dropped with the writer and redone on resume.
        """
        self._commit_lock.acquire()
        self._commit_lock.release()


class DurableSession:
    """One session (a run, a resume, or a retry of dead letters) of a run with a sink or store.

    Opens the run store in ``run_dir`` (none without one: the sink alone), checks
    that a resume matches the stored run, cuts the sink back to its committed
    state, decides which source items to skip, and owns the writer.

    Raises (from :meth:`open`):
        HeadraceError: ``run_dir`` already holds a run and ``resume`` was not asked.
        ResumeMismatch: nothing to resume, or the pipeline, source or sink differ.
    """

    def __init__(
        self,
        *,
        run_dir: Path | None,
        run_store: str | None = None,
        sink: DurableSink,
        definition: dict[str, Any],
        fingerprint: str,
        mode: Mode,
        force: bool,
        overwrite: bool = False,
        rebuild_sink: bool = False,
    ) -> None:
        self.run_dir = run_dir
        self.location = StoreLocation(run_dir, run_store) if run_dir is not None else None
        self.sink = sink
        self.definition = definition
        self.fingerprint = fingerprint
        self.mode = mode
        self.force = force
        self.overwrite = overwrite
        self.rebuild_sink = rebuild_sink
        self.store: RunStore | None = None
        self.resumed = False  # whether this session carries on a stored run
        self.session = 0
        self.skipped = 0
        self._watermark = 0
        self._digest = self._stored_digest = ""
        self._finished: dict[int, str] = {}
        self._retry: dict[int, str] = {}
        self.writer: DurableWriter | None = None

    def open(self, *, total: int | None = None) -> None:
        """Open store and sink; afterwards :meth:`skip` and :attr:`writer` are ready.

        ``total`` is the source's size where it is cheap to know (shown by ``status``).
        """
        where = self.location
        if where is None:
            self.sink.open({}, overwrite=self.overwrite)
            self.writer = DurableWriter(None, self.sink, session=0, finished_above={})
            return
        exists = where.exists()
        if self.mode == "auto":
            self.mode = "resume" if exists else "new"
        self.resumed = exists and self.mode in ("resume", "retry_dead")
        if exists and self.mode == "new":
            raise HeadraceError(
                f"{where} already holds a run; resume it (`headrace resume {where.run_dir}`; "
                "resume=True in Python), start it again (--fresh; fresh=True), or choose "
                "another run_dir"
            )
        if not exists and self.mode not in ("new", "fresh"):
            raise ResumeMismatch(f"there is no run to resume in {where}")
        store = self.store = where.open()
        try:
            self._open_held(store, where, exists, total)
        except BaseException:
            self.store = None
            try:
                store.release_lease()
            finally:
                store.close()
            raise

    def _open_held(
        self, store: RunStore, where: StoreLocation, exists: bool, total: int | None
    ) -> None:
        # one session at a time, decided before anything touches the sink
        dead_holder = store.acquire_lease()
        if dead_holder is not None:
            _log.warning(
                "headrace: took over the run in %s from %s, which stopped beating",
                where,
                dead_holder.describe(),
            )
        if not exists and store.definition() is not None:
            raise HeadraceError(f"{where} was started by another session just now")
        if exists and self.mode == "fresh":  # held now: no session of it is running
            store.discard()
            (where.run_dir / "dead.jsonl").unlink(missing_ok=True)
            exists = False
        where.run_dir.mkdir(parents=True, exist_ok=True)  # for dead.jsonl, whatever the store
        note = None
        if exists:
            note = self._check_matches(store)
        else:
            store.create(self.definition, self.fingerprint)
        if total is not None:
            store.set_total(total)
        if self.rebuild_sink:
            moved = self.sink.set_aside()
            forgotten = store.forget_outputs()
            note = "; ".join(
                filter(None, [note, f"rebuilt the sink: {forgotten} outputs to compute again"])
            )
            _log.warning(
                "headrace: rebuilding the sink of %s: %s; %s finished outputs will be computed "
                "again",
                where,
                f"the old output is now {moved}" if moved else "nothing to set aside",
                forgotten,
            )
        self.session = store.start_session(forced=bool(note), note=note or None)
        # on a resume, output beyond the committed state was this run's own: cut back
        overwrite = self.overwrite or self.mode != "new"
        try:
            recovered = self.sink.open(store.sink_state(), overwrite=overwrite)
        except BaseException:
            if not exists:  # a new run refused at its sink (output already there): no run
                store.discard()
            raise
        if recovered is not None:
            _roll_forward(store, recovered)
        self._watermark = store.watermark()
        self._stored_digest = store.key_digest()
        self._finished = store.finished_above(self._watermark)
        if self.mode == "retry_dead":
            self._retry = store.dead_items()
        self.writer = DurableWriter(
            store,
            self.sink,
            session=self.session,
            finished_above=dict(self._finished),
            replace=self.mode == "retry_dead",
        )

    def _check_matches(self, store: RunStore) -> str | None:
        stored = store.definition() or {}
        for part in ("source", "sink"):
            if stored.get(part) != self.definition.get(part):
                raise ResumeMismatch(
                    f"the {part} differs from the stored run in {self.location}: "
                    f"stored {stored.get(part)}, given {self.definition.get(part)}"
                )
        before = store.fingerprint()
        if before == self.fingerprint:
            return None
        changes = identity_changes(stored.get("steps"), self.definition.get("steps", {}))
        changed = "; ".join(changes[:5]) or (
            f"fingerprint {str(before)[:12]} then, {self.fingerprint[:12]} now"
        )
        if not self.force:
            raise ResumeMismatch(
                f"the pipeline changed since the run in {self.location} started ({changed}): "
                "finished items were computed by the old one. Resume anyway with --force "
                "(force=True in Python; the store records that it was forced), or start "
                "again with --fresh (fresh=True)"
            )
        store.force_fingerprint(self.fingerprint)
        return f"pipeline fingerprint changed from {before} to {self.fingerprint}: {changed}"

    def skip(self, index: int, key: str) -> bool:
        """Whether the item at source ``index`` is not to be run in this session.

        Raises:
            ResumeMismatch: the stored run finished a different key at this index
                (the source changed).
        """
        if index < self._watermark:
            self._digest = chain_key(self._digest, key)
            if index == self._watermark - 1 and self._digest != self._stored_digest:
                raise ResumeMismatch(
                    f"the source changed: its first {self._watermark:,} records do not have "
                    f"the keys that the run in {self.location} finished there"
                )
        if self.mode == "retry_dead":
            stored_key = self._retry.get(index)
            if stored_key is None:
                self.skipped += 1
                return True
            self._same_key(index, stored_key, key)
            return False
        if index < self._watermark:
            self.skipped += 1
            return True
        stored = self._finished.get(index)
        if stored is None:
            return False
        self._same_key(index, stored, key)
        self.skipped += 1
        return True

    def check_read_all(self, read: int) -> None:
        """The source ended after ``read`` records: refuse if it ended below the watermark.

        Raises:
            ResumeMismatch: the source is shorter than the part the run finished.
        """
        if read < self._watermark:
            raise ResumeMismatch(
                f"the source changed: it holds {read:,} records, but the run in "
                f"{self.location} finished the first {self._watermark:,}"
            )

    def _same_key(self, index: int, stored: str, given: str) -> None:
        if stored != given:
            raise ResumeMismatch(
                f"the source changed: item {index} has key {given!r}, but the run in "
                f"{self.location} finished key {stored!r} there"
            )

    def dead_letters(self) -> list[FinishedItem]:
        """The items that failed in this session (read back from the store)."""
        if self.store is None:
            return []
        return self.store.dead_letters(session=self.session)

    def close(self, *, aborted: bool, read: int | None = None) -> None:
        """Close the sink and store; after a clean end, write ``dead.jsonl`` from the store.

        ``read`` is how many records the source held, when it was read to its end.
        """
        try:
            if self.writer is not None:
                self.writer.wait_idle()
            self.sink.close()
            if self.store is not None and read is not None and not aborted:
                self.store.set_total(read)
            if self.store is not None and not aborted and self.run_dir is not None:
                _write_dead_file(self.store, self.run_dir / "dead.jsonl")
        finally:
            if self.store is not None:
                try:
                    self.store.release_lease()
                except Exception as exc:  # an unreachable store: the lease goes stale instead
                    _log.warning("headrace: could not give back the run's lease: %s", exc)
                finally:
                    self.store.close()


def _write_dead_file(store: RunStore, path: Path) -> None:
    """All dead letters of the run, one JSON object a line, replaced atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        for dead in store.dead_letters():
            handle.write(
                encode_json(
                    {
                        "index": dead.index,
                        "key": dead.key,
                        "step": dead.step,
                        "error_type": dead.error_type,
                        "message": dead.message,
                        "attempts": dead.attempts,
                        "item": dead.decoded_item(),
                    }
                )
                + b"\n"
            )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def chain_key(digest: str, key: str) -> str:
    """Fold one more key into the digest of the keys below the watermark, in source order.

    A resume folds the keys it skips and compares: a source edited anywhere
    below the watermark is refused instead of silently skipped.
    """
    # a CRC continues from its last value: the stored digest is the running checksum of
    # every key below the watermark (detects edits; it is not meant to resist forgery)
    return str(zlib.crc32((key + "\x00").encode(), int(digest or 0)))


def _roll_forward(store: RunStore, recovered: Recovered) -> None:
    """Record in the store a commit that reached a journaled sink before a kill."""
    commit = orjson.loads(recovered.journal)
    store.commit(
        [(int(i), str(k), str(s)) for i, k, s in commit["rows"]],
        [(int(i), st, et, m, int(a), it) for i, st, et, m, a, it in commit["dead"]],
        watermark=int(commit["watermark"]),
        key_digest=str(commit["key_digest"]),
        sink_state=recovered.state,
        session=int(commit["session"]),
        replace=bool(commit["replace"]),
    )
