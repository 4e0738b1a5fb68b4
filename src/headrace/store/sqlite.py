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

The operations are :class:`~headrace.store.sql.SqlRunStore`'s, written once for
both databases; :class:`SqliteDialect` says how they run on one file.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import StorageError
from .run_store import Row
from .sql import SqlRunStore

__all__ = ["SqliteDialect", "SqliteRunStore"]

T = TypeVar("T")

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
    session INTEGER NOT NULL,
    ord INTEGER
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


class SqliteDialect:
    """How the run store's operations run on one SQLite file (see
    :class:`~headrace.store.sql.Dialect`): one connection, ``BEGIN IMMEDIATE``
    transactions, and this host's clock for the lease (the file lives here)."""

    run_id = 1  # the single-row tables' key: a file holds one run
    duplicate: type[Exception] = sqlite3.IntegrityError
    _NAMES: ClassVar[dict[str, str]] = {
        "runs": "run",
        "items": "items",
        "dead": "dead",
        "leases": "lease",
        "sessions": "sessions",
        "samples": "samples",
        "one": "id",
        "of_run": "",
        "i_of_run": "",
        "t_of_run": "",
        "run_col": "",
        "run_val": "",
        "same_run": "",
        "clock": ":now",
        "for_update": "",
    }

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"the run store {path}"
        self.lease_where = str(path.parent)
        self._cache: dict[str, str] = {}
        try:
            self._db = _connect(path)
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

    def sql(self, template: str) -> str:
        """``template`` with this file's table names."""
        query = self._cache.get(template)
        if query is None:
            query = self._cache[template] = template.format(**self._NAMES)
        return query

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection (autocommit: a read takes no write lock)."""
        yield self._db

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT``."""
        with _Transaction(self._db):
            yield self._db

    def retrying(self, what: str, once: Callable[[bool], T]) -> T:
        """``once(False)``: a file has no outage to wait out; its errors (a full disk, a
        damaged file) become one :class:`StorageError`."""
        try:
            return once(False)
        except sqlite3.Error as exc:
            raise StorageError.writing(self.path, exc, f"write a {what} to") from None

    def insert_items(self, cursor: Any, rows: list[Row], session: int) -> None:
        """``executemany`` with positional values: measured the fastest way in."""
        # the session is the same for the whole batch: a number we made, inlined
        cursor.executemany(
            "INSERT INTO items (idx, key, status, ord, session) "
            f"VALUES (?, ?, ?, ?, {int(session)})",
            rows,
        )

    def stream(self, query: str, parameters: dict[str, Any]) -> Iterator[Any]:
        """The rows of ``query``, 500 at a time."""
        cursor = self._db.execute(query, parameters)
        while rows := cursor.fetchmany(500):
            yield from rows

    def lock_run(self, cursor: Any) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already holds the file's write lock."""

    def key_out(self, stored: Any) -> str:
        """The key as stored."""
        return str(stored)

    def text_in(self, text: str) -> str:
        """``text`` as it is."""
        return text

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


class SqliteRunStore(SqlRunStore):
    """A run's store in ``<run_dir>/run.sqlite`` (WAL; written by one writer at a time).

    Args:
        path: the database file.
    """

    FILENAME = "run.sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(SqliteDialect(path))

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
            if "ord" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}:
                db.execute("ALTER TABLE items ADD COLUMN ord INTEGER")
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
