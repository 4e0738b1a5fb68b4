"""The SQLite run store, the embedded default: one file, ``run.sqlite``, in the run directory.

What it records:

- the run's definition (pipeline fingerprint, source, sink, options) and every
  forced resume;
- each finished item by source index: its key and outcome (``done``,
  ``dead`` with step, error type, message and attempts, or ``filtered``);
- the *watermark*: every source index below it is finished, so a resume skips
  that prefix by position and only looks up keys above it;
- the sink's committed state (a byte offset, or the list of part files).

Everything a batch of finished items changes is written in one transaction,
after the sink has made the batch's outputs durable: a crash leaves either
both or, on the sink side only, output that the next resume removes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .base import (
    THIN_SAMPLES,
    DeadGroup,
    DeadRow,
    FinishedItem,
    Row,
    RunStatus,
    Sample,
    StepError,
    decode_samples,
    merge_groups,
)
from .lease import Lease, check_free, check_held, end_holder, new_holder, start_holder

__all__ = ["SqliteRunStore"]

# Measured: a CHECK constraint or five more (NULL) columns on `items` triple the
# cost of an insert, so the hot table is narrow and the rare details of dead
# letters live apart. The writer only ever writes 'done', 'dead' or 'filtered'.
SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    definition TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    watermark INTEGER NOT NULL DEFAULT 0,
    key_digest TEXT NOT NULL DEFAULT '',
    sink_state TEXT NOT NULL DEFAULT '{}',
    total INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    session INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    idx INTEGER PRIMARY KEY,
    step TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    item TEXT,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    session INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired REAL NOT NULL,
    heartbeat REAL NOT NULL,
    machine TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sessions (
    n INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0,
    note TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    t REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);
"""


class SqliteRunStore:
    """A run's store in ``<run_dir>/run.sqlite`` (WAL; written by one writer at a time).

    Args:
        path: the database file.
    """

    FILENAME = "run.sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = self._connect(path)
        except sqlite3.Error as exc:
            free = _free_bytes(path)
            if free is not None and free < _LOW_DISK:  # not damaged: no room to open it
                raise StorageError(
                    f"the run store {path} cannot be opened: {exc}; its disk has {free:,} "
                    "bytes free (SQLite needs room to open it): make room and try again"
                ) from None
            raise StorageError(
                f"the run store {path} cannot be opened: {exc} (is it damaged? a copy of the "
                "run directory from before the damage can be resumed)"
            ) from None
        self._holder: str | None = None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """Open the file in WAL mode with the schema, waiting while another process
        holds it: a session starting while another commits, or the first opener
        after a kill recovering the WAL, answers "locked" even past the busy timeout."""
        deadline = time.monotonic() + 30.0
        pause = 0.05
        while True:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # With WAL, NORMAL survives any crash of the process; an OS crash may lose
                # the last commits, and then the sink is cut back to the state it recorded.
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
                lease_columns = {row[1] for row in db.execute("PRAGMA table_info(lease)")}
                if "machine" not in lease_columns:  # a store made by an older headrace
                    db.execute("ALTER TABLE lease ADD COLUMN machine TEXT NOT NULL DEFAULT ''")
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
            except BaseException:
                db.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @classmethod
    def in_dir(cls, run_dir: Path) -> SqliteRunStore:
        """Open (creating if needed) the store of the run directory ``run_dir``."""
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir / cls.FILENAME)

    @classmethod
    def exists_in(cls, run_dir: Path) -> bool:
        """Whether ``run_dir`` holds a run store with a definition."""
        path = run_dir / cls.FILENAME
        if not path.exists():
            return False
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT count(*) FROM run").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return False
            # locked by another session's start: open it properly, which waits
            db.close()
            store = cls(path)
            try:
                return store.definition() is not None
            finally:
                store.close()
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"the run store {path} cannot be read: {exc} (is it damaged?)"
            ) from None
        finally:
            db.close()
        return bool(row and row[0])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # --- definition and sessions ---------------------------------------------

    def definition(self) -> dict[str, Any] | None:
        """The stored run definition, or ``None`` for a new store."""
        row = self._db.execute("SELECT definition FROM run WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return dict(json.loads(row[0]))
        except (TypeError, ValueError):
            raise StorageError(
                f"the run store {self.path} is damaged: its run definition is not a JSON object"
            ) from None

    def fingerprint(self) -> str | None:
        """The pipeline fingerprint the run was started (or last forced) with."""
        row = self._db.execute("SELECT fingerprint FROM run WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def create(self, definition: dict[str, Any], fingerprint: str) -> None:
        """Record a new run's definition.

        The sink's state starts as ``{"token": <random>}``: a name for this run that
        a sink keeping a journal in its own database files its commits under.
        """
        now = time.time()
        self._db.execute(
            "INSERT INTO run (id, definition, fingerprint, sink_state, created, updated) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (
                json.dumps(definition, sort_keys=True),
                fingerprint,
                json.dumps({"token": uuid.uuid4().hex}),
                now,
                now,
            ),
        )

    def start_session(self, *, forced: bool = False, note: str | None = None) -> int:
        """Record that a run or resume starts; return its session number (1, 2, ...)."""
        with self._transaction():
            row = self._db.execute("SELECT coalesce(max(n), 0) + 1 FROM sessions").fetchone()
            number = int(row[0])
            self._db.execute(
                "INSERT INTO sessions (n, started, forced, note) VALUES (?, ?, ?, ?)",
                (number, time.time(), int(forced), note),
            )
            if self._holder is not None:
                self._db.execute(
                    "UPDATE lease SET session = ? WHERE id = 1 AND holder = ?",
                    (number, self._holder),
                )
        return number

    def force_fingerprint(self, fingerprint: str) -> None:
        """Adopt a changed pipeline fingerprint (a forced resume; the session records it)."""
        self._db.execute("UPDATE run SET fingerprint = ? WHERE id = 1", (fingerprint,))

    # --- the lease (one session at a time; see headrace.store.lease) ----------

    def lease(self) -> Lease | None:
        """The run's lease as stored (its holder may be dead: see :meth:`Lease.alive`)."""
        row = self._db.execute(
            "SELECT holder, session, host, pid, acquired, heartbeat, machine FROM lease "
            "WHERE id = 1"
        ).fetchone()
        # a SQLite store lives on this host: its clock is this host's
        if row is None:
            return None
        holder, session, host, pid, acquired, heartbeat, machine = row
        return Lease(holder, session, host, pid, acquired, heartbeat, machine, time.time())

    def acquire_lease(self) -> Lease | None:
        """Take the run for this session; return the dead holder's lease if taken over.

        Raises:
            RunBusy: a live session holds it.
        """
        holder, host, pid, machine = new_holder()
        with self._transaction():
            current = self.lease()
            now = time.time()
            check_free(current, holder, str(self.path.parent), now)
            self._db.execute(
                "INSERT OR REPLACE INTO lease (id, holder, session, host, pid, acquired, "
                "heartbeat, machine) VALUES (1, ?, 0, ?, ?, ?, ?, ?)",
                (holder, host, pid, now, now, machine),
            )
        self._holder = holder
        start_holder(holder)
        return current

    def heartbeat(self) -> None:
        """Renew this session's lease.

        Raises:
            LeaseLost: another session took it over.
        """
        if self._holder is None:
            return
        done = self._db.execute(
            "UPDATE lease SET heartbeat = ? WHERE id = 1 AND holder = ?",
            (time.time(), self._holder),
        )
        check_held(self._holder if done.rowcount else None, self._holder, str(self.path.parent))

    def release_lease(self) -> None:
        """Give the lease back (if this session still holds it)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            end_holder(holder)
            self._db.execute("DELETE FROM lease WHERE id = 1 AND holder = ?", (holder,))

    def forced_sessions(self) -> list[tuple[int, str | None]]:
        """The sessions that forced a resume, with their notes."""
        rows = self._db.execute("SELECT n, note FROM sessions WHERE forced = 1 ORDER BY n")
        return [(int(n), note) for n, note in rows]

    # --- resume --------------------------------------------------------------

    def watermark(self) -> int:
        """Every source index below this is finished."""
        row = self._db.execute("SELECT watermark FROM run WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def key_digest(self) -> str:
        """The digest of the keys below the watermark, in source order."""
        row = self._db.execute("SELECT key_digest FROM run WHERE id = 1").fetchone()
        return str(row[0]) if row else ""

    def finished_above(self, watermark: int) -> dict[int, str]:
        """Source index -> key of the items finished at or above ``watermark``."""
        rows = self._db.execute("SELECT idx, key FROM items WHERE idx >= ?", (watermark,))
        return {int(idx): str(key) for idx, key in rows}

    def sink_state(self) -> dict[str, Any]:
        """The sink's committed state (what its files may hold)."""
        row = self._db.execute("SELECT sink_state FROM run WHERE id = 1").fetchone()
        try:
            return dict(json.loads(row[0])) if row else {}
        except (TypeError, ValueError):
            raise StorageError(
                f"the run store {self.path} is damaged: its sink state is not a JSON object"
            ) from None

    def set_total(self, total: int) -> None:
        """Record how many records the source holds."""
        self._db.execute("UPDATE run SET total = ? WHERE id = 1", (total,))

    def finished_sessions(self) -> dict[str, int]:
        """Key -> the session that committed it, for every finished item."""
        return {str(k): int(n) for k, n in self._db.execute("SELECT key, session FROM items")}

    def dead_items(self) -> dict[int, str]:
        """Source index -> key of every dead item (for ``retry-dead``)."""
        rows = self._db.execute("SELECT idx, key FROM items WHERE status = 'dead'")
        return {int(idx): str(key) for idx, key in rows}

    _DEAD = (
        "SELECT i.idx, i.key, i.status, d.step, d.error_type, d.message, d.attempts, d.item "
        "FROM items i JOIN dead d ON d.idx = i.idx WHERE i.status = 'dead'"
    )

    def dead_letters(
        self, *, session: int | None = None, limit: int | None = None
    ) -> list[FinishedItem]:
        """Every dead item with its error in source order; only one session's if given,
        and the first ``limit`` of them if given."""
        query, parameters = self._DEAD, []
        if session is not None:
            query, parameters = query + " AND i.session = ?", [session]
        query += " ORDER BY i.idx" + ("" if limit is None else f" LIMIT {int(limit)}")
        return [FinishedItem(*row) for row in self._db.execute(query, parameters)]

    def iter_dead_letters(self) -> Iterator[FinishedItem]:
        """Every dead item in source order, read a few at a time."""
        cursor = self._db.execute(self._DEAD + " ORDER BY i.idx")
        while rows := cursor.fetchmany(500):
            yield from (FinishedItem(*row) for row in rows)

    def dead_letter_groups(self, examples: int) -> list[DeadGroup]:
        """The dead letters grouped by step and error type, each with a few examples."""
        groups = self._db.execute(
            "SELECT d.step, d.error_type, count(*) FROM items i JOIN dead d ON d.idx = i.idx "
            "WHERE i.status = 'dead' GROUP BY d.step, d.error_type"
        ).fetchall()
        return merge_groups(
            (
                DeadGroup(
                    str(step),
                    str(error_type),
                    int(count),
                    [
                        FinishedItem(*row)
                        for row in self._db.execute(
                            self._DEAD + " AND d.step = ? AND d.error_type = ? ORDER BY i.idx "
                            f"LIMIT {int(examples)}",
                            (step, error_type),
                        )
                    ],
                )
                for step, error_type, count in groups
            ),
            examples,
        )

    # --- commit --------------------------------------------------------------

    def commit(
        self,
        rows: list[Row],
        dead: list[DeadRow],
        *,
        watermark: int,
        sink_state: dict[str, Any],
        session: int,
        replace: bool = False,
        key_digest: str | None = None,
    ) -> None:
        """Record a batch of finished items, the new watermark and sink state, atomically.

        With ``replace`` (retrying dead letters), an item's earlier record is replaced.
        ``key_digest`` (the digest of the keys below the new watermark) is kept as
        it was when not given.
        """
        try:
            self._commit(rows, dead, watermark, sink_state, session, replace, key_digest)
        except sqlite3.Error as exc:  # a full disk, a damaged file
            raise StorageError.writing(self.path, exc, "commit to") from None

    def _commit(
        self,
        rows: list[Row],
        dead: list[DeadRow],
        watermark: int,
        sink_state: dict[str, Any],
        session: int,
        replace: bool,
        key_digest: str | None,
    ) -> None:
        now = time.time()
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._transaction():
            if self._holder is not None:  # the fence: a session that lost its lease stops
                held = self._db.execute("SELECT holder FROM lease WHERE id = 1").fetchone()
                check_held(held and held[0], self._holder, str(self.path.parent))
            if replace:
                self._db.executemany("DELETE FROM dead WHERE idx = ?", [(r[0],) for r in rows])
            # the session is the same for the whole batch: a number we made, inlined
            self._db.executemany(
                f"{verb} INTO items (idx, key, status, session) VALUES (?, ?, ?, {int(session)})",
                rows,
            )
            if dead:
                self._db.executemany(
                    "INSERT INTO dead (idx, step, error_type, message, attempts, item, finished) "
                    f"VALUES (?, ?, ?, ?, ?, ?, {float(now)!r})",
                    dead,
                )
            self._db.execute(
                "UPDATE run SET watermark = ?, key_digest = coalesce(?, key_digest), "
                "sink_state = ?, updated = ? WHERE id = 1",
                (watermark, key_digest, json.dumps(sink_state, sort_keys=True), now),
            )

    def forget_outputs(self) -> int:
        """Forget every ``done`` outcome (the sink that held them was set aside), so a
        resume computes those items again; return how many. Dead letters, filtered
        items and dropped repeats stay finished."""
        with self._transaction():
            forgotten = self._db.execute("DELETE FROM items WHERE status = 'done'").rowcount
            self._db.execute(
                "UPDATE run SET watermark = 0, key_digest = '', sink_state = ? WHERE id = 1",
                (json.dumps({"token": uuid.uuid4().hex}),),
            )
        return int(forgotten)

    def discard(self) -> None:
        """Forget this run entirely (a new run whose first session was refused before
        anything ran), so the run directory holds no run again."""
        with self._transaction():
            for table in ("items", "dead", "sessions", "samples", "run"):
                self._db.execute(f"DELETE FROM {table}")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # --- status --------------------------------------------------------------

    def status(self) -> RunStatus:
        """Counts, the last error of each step, and timing."""
        counts = dict(
            self._db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall()
        )
        run = self._db.execute(
            "SELECT definition, watermark, created, updated, total FROM run WHERE id = 1"
        ).fetchone()
        sessions = self._db.execute("SELECT count(*) FROM sessions").fetchone()[0]
        errors = []
        for step, count in self._db.execute(
            "SELECT step, count(*) FROM dead GROUP BY step ORDER BY step"
        ).fetchall():
            error_type, message = self._db.execute(
                "SELECT error_type, message FROM dead WHERE step = ? "
                "ORDER BY finished DESC, idx DESC LIMIT 1",
                (step,),
            ).fetchone()
            errors.append(StepError(str(step), int(count), str(error_type), str(message)))
        return RunStatus.from_rows(counts, run, int(sessions), errors)

    # --- the time series -------------------------------------------------------

    def record_sample(self, session: int, seq: int, t: float, data: dict[str, Any]) -> None:
        """Write (or overwrite) one sample of the run's time series."""
        self._db.execute(
            "INSERT OR REPLACE INTO samples (session, seq, t, data) VALUES (?, ?, ?, ?)",
            (session, seq, t, json.dumps(data)),
        )

    def thin_samples(self, session: int) -> None:
        """Drop every other sample of ``session``, keeping its first and its last."""
        self._db.execute(THIN_SAMPLES.format(table="samples", run="", p="?"), (session, session))

    def samples(self) -> list[Sample]:
        """The run's time series, every session's, in order."""
        rows = self._db.execute("SELECT session, seq, t, data FROM samples ORDER BY session, seq")
        return decode_samples(rows.fetchall())

    def latest_sample(self) -> Sample | None:
        """The last sample of the run's latest session (``None`` before the first)."""
        rows = self._db.execute(
            "SELECT session, seq, t, data FROM samples ORDER BY session DESC, seq DESC LIMIT 1"
        )
        found = decode_samples(rows.fetchall())
        return found[0] if found else None

    def sessions(self) -> list[tuple[int, float, bool, str | None]]:
        """Every session: its number, when it started, whether it was forced, its note."""
        rows = self._db.execute("SELECT n, started, forced, note FROM sessions ORDER BY n")
        return [(int(n), float(t), bool(f), note) for n, t, f, note in rows.fetchall()]


_LOW_DISK = 1 << 20  # under this much free space, an unopenable store is a full disk's


def _free_bytes(path: Path) -> int | None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._undo()  # a COMMIT that failed (a full disk) may leave it open
                raise
        else:
            self._undo()

    def _undo(self) -> None:
        # SQLite may have rolled back already (SQLITE_FULL does): a ROLLBACK then fails
        # with "no transaction is active", which must not hide the error that matters
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
