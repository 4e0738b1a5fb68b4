"""A durable run's session: a run, a resume, or a retry of its dead letters.

It opens the run store, checks that a resume matches the stored run, cuts the
sink back to its committed state, decides which source items to skip, and owns
the :class:`~headrace.store.writer.DurableWriter`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import HeadraceError, ResumeMismatch
from ..io.locking import SinkLock
from ..io.records import DurableSink, Recovered
from . import StoreLocation
from .dead_file import write_dead_from_store
from .identities import identity_changes
from .pipeline_ref import pipeline_words, recipe_path
from .rerun import items_to_rerun
from .run_store import FinishedItem, RunStore
from .writer import DurableWriter, chain_key

_log = logging.getLogger("headrace.run")

__all__ = ["DurableSession", "Mode", "pipeline_words"]  # pipeline_words: its old home

Mode = Literal["new", "resume", "auto", "fresh", "retry_dead", "rerun"]
"""How a session meets what ``run_dir`` holds: ``new`` (refuse a run there),
``resume`` (need one), ``auto`` (resume one if there, else start), ``fresh``
(discard one if there, its output too, and start), ``retry_dead`` (run its dead
letters again), ``rerun`` (run again the items a condition chooses, replacing their
outputs: see :mod:`headrace.store.rerun`)."""


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
        rerun: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.rerun = rerun
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
        self._rerun: dict[int, str] = {}  # chosen for a rerun, not finished again
        self.writer: DurableWriter | None = None
        self._lock: SinkLock | None = None

    def _lock_sink(self) -> None:
        """Hold the sink's OS lock for this session's life, before anything else: a
        session that still exists (frozen or not) keeps its sink, so no other session
        can write under it (see :mod:`headrace.io.locking`)."""
        locate = getattr(self.sink, "lock_path", None)
        path = locate() if callable(locate) else None
        if path is None:
            return
        described = self.sink.describe()
        what = described.get("path") or (
            f"table {described['table']}" if "table" in described else str(path)
        )
        lock = SinkLock(Path(path), str(what))
        lock.acquire()
        self._lock = lock

    def _unlock_sink(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def open(self, *, total: int | None = None) -> None:
        """Open store and sink; afterwards :meth:`skip` and :attr:`writer` are ready.

        ``total`` is the source's size where it is cheap to know (shown by ``status``).
        """
        self._lock_sink()
        try:
            self._open_locked(total)
        except BaseException:
            self._unlock_sink()
            raise

    def _open_locked(self, total: int | None) -> None:
        where = self.location
        if where is None:
            self.sink.open({}, overwrite=self.overwrite)
            self.writer = DurableWriter(None, self.sink, session=0, finished_above={})
            return
        exists = where.exists()
        if self.mode == "auto":
            self.mode = "resume" if exists else "new"
        self.resumed = exists and self.mode in ("resume", "retry_dead", "rerun")
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
            self._check_fresh_discards_its_own(store, where)
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
        if self.mode == "rerun":
            note = "; ".join(filter(None, [f"rerun where {self.rerun}", note]))
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
        self._rerun = items_to_rerun(
            store, self.sink, self.mode, self.rerun, self.location, lambda: self._adopt(store)
        )
        self.writer = DurableWriter(
            store,
            self.sink,
            session=self.session,
            finished_above=dict(self._finished),
            replace=self.mode == "retry_dead" or bool(self._rerun),
            position=store.next_output_position(),
        )

    def _adopt(self, store: RunStore) -> None:
        """Make a rerun's pipeline the run's from now on (a resume loads it again)."""
        if store.fingerprint() != self.fingerprint:
            store.force_fingerprint(self.fingerprint, pipeline=self.definition.get("pipeline"))

    def _check_fresh_discards_its_own(self, store: RunStore, where: StoreLocation) -> None:
        """Refuse to discard, for a fresh start, a run that another recipe created (a
        downloaded recipe's ``name:`` may be another project's run directory).

        Raises:
            HeadraceError: the stored run was made by another recipe, or this recipe
                meets a run that no recipe made.
        """
        stored = recipe_path((store.definition() or {}).get("pipeline"))
        given = recipe_path(self.definition.get("pipeline"))
        if stored == given:
            return
        done = store.status().finished
        made_by = f"recipe {stored}" if stored else "a pipeline that is not a recipe"
        raise HeadraceError(
            f"{where} holds a run made by {made_by} ({done:,} items finished), not by this "
            f"one: --fresh (fresh=True) discards only this recipe's own runs. To discard "
            f"it, remove {where.run_dir} yourself; or give this run another --run-dir"
        )

    def _check_matches(self, store: RunStore) -> str | None:
        stored = store.definition() or {}
        if "shards" in stored and self.mode == "rerun":
            raise ResumeMismatch(
                f"the run in {self.location} was split across workers: a rerun of such a "
                "run is not built yet (resume it with `headrace resume`)"
            )
        if ("shards" in stored) != ("shards" in self.definition):
            how = "split across workers" if "shards" in stored else "run in one process"
            raise ResumeMismatch(
                f"the run in {self.location} was {how}; resume it the same way "
                "(`headrace resume` does; in Python, with the backend= it was started with)"
            )
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
        if not self.force and self.mode != "rerun":  # a rerun is meant to change it
            raise ResumeMismatch(
                f"the pipeline changed since the run in {self.location} started ({changed}): "
                "finished items were computed by the old one. Resume anyway with --force "
                "(force=True in Python; the store records that it was forced), or start "
                "again with --fresh (fresh=True)"
            )
        if self.mode != "rerun":  # a rerun adopts it once its items are taken out
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
        again = self._rerun.get(index)
        if again is not None:
            self._same_key(index, again, key)
            return False
        if self.mode == "rerun":
            self.skipped += 1
            return True
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

    def dead_letters(self, limit: int | None = None) -> list[FinishedItem]:
        """The items that failed in this session (read back from the store), the first
        ``limit`` of them if given."""
        if self.store is None:
            return []
        return self.store.dead_letters(session=self.session, limit=limit)

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
                write_dead_from_store(self.store, self.run_dir / "dead.jsonl")
        finally:
            try:
                if self.store is not None:
                    try:
                        self.store.release_lease()
                    except Exception as exc:  # an unreachable store: the lease goes stale
                        _log.warning("headrace: could not give back the run's lease: %s", exc)
                    finally:
                        self.store.close()
            finally:
                self._unlock_sink()  # last: no other session writes until this one is done


def _position(row: list[Any]) -> int | None:
    return int(row[3]) if len(row) > 3 and row[3] is not None else None


def _roll_forward(store: RunStore, recovered: Recovered) -> None:
    """Record in the store a commit that reached a journaled sink before a kill."""
    commit = orjson.loads(recovered.journal)
    store.commit(
        # a journal of an older headrace has no positions
        [(int(r[0]), str(r[1]), str(r[2]), _position(r)) for r in commit["rows"]],
        [(int(i), st, et, m, int(a), it) for i, st, et, m, a, it in commit["dead"]],
        watermark=int(commit["watermark"]),
        key_digest=str(commit["key_digest"]),
        sink_state=recovered.state,
        session=int(commit["session"]),
        replace=bool(commit["replace"]),
    )
