"""SQL: a table as a sink with bulk, idempotent upserts (a query as a source is in
:mod:`headrace.io.sql_source`).

Databases are named by URL, as SQLAlchemy does: ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db``, ``postgresql://user@host:5432/dbname``; the
connection, identifiers, column types and bulk upserts are in
:mod:`headrace.io.database`.

The sink commits each batch of outputs in one transaction of its own database,
together with the run store's record of that batch (the *journal*, in the table
``headrace_sink_commits``). A run killed after the sink's transaction but before
the run store's is rolled forward on resume from that journal: the items are
marked done without being computed again. Rows are upserted on the key column,
so even a batch written twice leaves one row per key.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import HeadraceError, LeaseLost, OutputExists, RunBusy
from ..services.secrecy import scrub_url
from ..values.checks import positive_int
from .columns import Columns
from .database import (
    Database,
    connect,
    create_table,
    holds_nul,
    psycopg_module,
    quote,
    sql_type,
    sqlite_cell,
    upsert_rows,
    without_password,
)
from .records import Recovered

__all__ = [
    "Database",
    "SqlSink",
    "connect",
    "quote",
    "upsert_rows",
    "without_password",
    "write_sql",
]


MARKER_TABLE = "headrace_sink_commits"
CLAIM_WAIT_S = 30
"""How long a session waits for the commit record that another session holds in an
open transaction (PostgreSQL) before it stops."""


class SqlSink:
    """Upserts outputs into a table on the item key, in bulk; see :func:`write_sql`."""

    flush_interval_s = 0.5
    keeps_journal = True

    def __init__(
        self,
        url: str,
        table: str,
        key: str = "key",
        columns: dict[str, str] | None = None,
        batch_size: int = 1000,
    ) -> None:
        positive_int(batch_size, "batch_size")
        scheme, sep, rest = url.partition("://")
        url = scheme.lower() + sep + rest  # a URL's scheme is case-insensitive (SQLITE:///)
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                f"unsupported database URL {scrub_url(url)!r}: use sqlite:///path.db or postgresql://..."
            )
        self.url = url
        self.requires = ("psycopg",) if url.startswith(("postgresql://", "postgres://")) else ()
        self.table = table
        self.key = key
        self.given = dict(columns) if columns is not None else None
        self.flush_items = batch_size
        self.columns = Columns(self.given, key_column=key)
        self._db: Database | None = None
        self._created = False
        self._token = ""
        self._seq = 0
        self._holder = ""
        self.shard: int | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run (the URL with any password removed)."""
        return {
            "kind": "sql",
            "url": without_password(self.url),
            "table": self.table,
            "key": self.key,
            "columns": self.given,
            "batch_size": self.flush_items,
            **({} if self.shard is None else {"shard": self.shard}),
        }

    def lock_path(self) -> Path | None:
        """For a SQLite database (a local file), the file whose OS lock the writing
        session holds, per table (and shard); ``None`` for PostgreSQL, where the commit
        record's holder fences a session in its own transaction."""
        if not self.url.startswith("sqlite:///"):
            return None
        path = Path(self.url.removeprefix("sqlite:///"))
        shard = "" if self.shard is None else f".s{self.shard:05d}"
        return path.with_name(f".{path.name}.{self.table}{shard}.lock")

    def encode(self, key: str, value: Any) -> list[Any]:
        """The output as one row of the table (the key column holds the item's key).

        Raises:
            ValueError: a field does not fit its column, or holds U+0000, which
                PostgreSQL's text and JSON cannot hold (the item's dead letter).
        """
        row = self.columns.row(key, value)
        if self._db is not None and self._db.dialect == "sqlite":  # text, as it stores them
            return [sqlite_cell(cell) for cell in row]
        if self._db is not None and self._db.dialect == "postgresql":
            kinds = self.columns.types or {}
            for name, cell in zip(self.columns.names, row, strict=True):
                if holds_nul(cell, kinds.get(name) == "json"):
                    raise ValueError(
                        f"field {name!r} holds the character U+0000, which PostgreSQL "
                        "cannot store in text or JSON"
                    )
        return row

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """Connect, check the table, and find a commit that the run store missed.

        Raises:
            OutputExists: a new run (nothing committed yet) and the table already
                holds rows, without ``overwrite`` (which upserts into it).
            HeadraceError: the table exists without a unique key column, or its
                commit record does not match the run store's.
        """
        db = self._db = connect(self.url)
        create_table(
            db,
            MARKER_TABLE,
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} "
            "(token TEXT PRIMARY KEY, seq BIGINT NOT NULL, journal TEXT NOT NULL, holder TEXT)",
        )
        if "holder" not in (db.table_columns(MARKER_TABLE) or {}):  # made by an older headrace
            db.execute(f"ALTER TABLE {MARKER_TABLE} ADD COLUMN holder TEXT")
        existing = db.table_columns(self.table)
        if existing is not None:
            self._created = True
            if self.key not in existing:
                raise HeadraceError(
                    f"table {self.table} has no key column {self.key!r} "
                    f"(columns: {', '.join(existing)})"
                )
            if not db.has_unique(self.table, self.key):
                raise HeadraceError(
                    f"table {self.table}: the key column {self.key!r} is neither the primary "
                    "key nor uniquely indexed, which the upserts need"
                )
            self.columns = Columns(existing, key_column=self.key)
            if "seq" not in state and not overwrite:
                rows = int(db.execute(f"SELECT count(*) FROM {quote(self.table)}").fetchone()[0])
                if rows:
                    raise OutputExists(
                        f"table {self.table} already holds {rows:,} rows that this run did not "
                        "write; pass --overwrite (overwrite=True in Python) to upsert into it "
                        "(rows with the same keys are replaced), or choose another table"
                    )
        self._token = str(state.get("token") or uuid.uuid4().hex)
        self._seq = int(state.get("seq", 0))
        row = self._claim(db)
        held = int(row[0]) if row is not None else 0
        if held == self._seq:
            return None
        if held == self._seq + 1 and row is not None:
            self._seq = held
            return Recovered(journal=str(row[1]).encode(), state=self._state())
        raise HeadraceError(
            f"table {self.table}: its commit record ({MARKER_TABLE}, commit {held}) does not "
            f"match the run store's (commit {self._seq}); was the table changed by hand?"
        )

    def _claim(self, db: Database) -> Any:
        """Make this session the commit record's holder and read the record, in one
        transaction: from now on a write by an earlier session (one that was frozen
        and lost its lease) finds another holder in its own transaction and is undone."""
        self._holder = uuid.uuid4().hex
        db.begin()
        try:
            if db.dialect == "postgresql":  # a frozen session's open transaction: wait, bounded
                db.execute(f"SET LOCAL lock_timeout = '{CLAIM_WAIT_S}s'")
            db.execute(
                f"INSERT INTO {MARKER_TABLE} (token, seq, journal, holder) VALUES (?, 0, '', ?) "
                "ON CONFLICT (token) DO UPDATE SET holder = excluded.holder",
                (self._token, self._holder),
            )
            row = db.execute(
                f"SELECT seq, journal FROM {MARKER_TABLE} WHERE token = ?", (self._token,)
            ).fetchone()
        except BaseException as exc:
            db.rollback()
            if "lock timeout" in str(exc):
                raise RunBusy(
                    f"table {self.table}: another session of this run holds its commit record "
                    f"in an open transaction (for over {CLAIM_WAIT_S} s: frozen?); this "
                    "session stops without writing"
                ) from None
            raise
        db.commit()
        return row

    def _state(self) -> dict[str, Any]:
        return {"token": self._token, "seq": self._seq}

    def set_aside(self) -> str | None:
        """A table is not set aside: its rows are upserted again by key on a rebuild."""
        return None

    def _create(self, db: Database) -> None:
        definitions = [  # no nested types: the sink has nested=False
            f"{quote(name)} {sql_type(db.dialect, kind)}"
            + (" PRIMARY KEY" if name == self.key else "")
            for name, kind in (self.columns.types or {}).items()
        ]
        statement = f"CREATE TABLE IF NOT EXISTS {quote(self.table)} ({', '.join(definitions)})"
        create_table(db, self.table, statement)
        self._created = True

    def write(self, records: list[list[Any]], journal: bytes | None = None) -> dict[str, Any]:
        """Upsert ``records`` (and the journal) in one transaction; return the state.

        A PostgreSQL server that restarts or stops answering is waited out as the run
        store waits (``$HEADRACE_STORE_OUTAGE_S``): the transaction is tried again on a
        new connection, unless it had committed before the connection broke.

        Raises:
            LeaseLost: another session holds the table's commit record.
            StoreUnavailable: the database did not answer for that long.
        """
        assert self._db is not None, "open() first"
        if not records:
            return self._state()
        if self._db.dialect != "postgresql":
            self._write_once(self._db, records, journal)
        else:
            from ..store.pg_connection import outlasting

            def once(retried: bool) -> None:
                if retried:
                    self._reconnect()
                    if journal is not None and self._landed():
                        return  # committed just before the connection broke
                assert self._db is not None
                self._write_once(self._db, records, journal)

            role = f"the sink's database (table {self.table})"
            outlasting(self.url, "sink write", once, role=role)
        if journal is not None:
            self._seq += 1
        return self._state()

    def _write_once(self, db: Database, records: list[list[Any]], journal: bytes | None) -> None:
        if not self._created:
            self._create(db)
        db.begin()
        try:
            upsert_rows(db, self.table, self.columns.names, self.key, records)
            if journal is not None:
                done = db.execute(
                    f"UPDATE {MARKER_TABLE} SET seq = ?, journal = ? "
                    "WHERE token = ? AND holder = ? AND seq = ?",
                    (self._seq + 1, journal.decode(), self._token, self._holder, self._seq),
                )
                if done.rowcount != 1:  # the fence: another session holds the table now
                    raise LeaseLost(
                        f"table {self.table} is written by another session of this run now "
                        "(this one's lease was taken over); this session stops and its last "
                        "batch is not written"
                    )
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection has nothing to undo
                db.rollback()
            raise
        db.commit()

    def _reconnect(self) -> None:
        """A new connection; an unreachable server is the outage's error, waited out."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        try:
            self._db = connect(self.url)
        except ConnectionError as exc:
            raise psycopg_module().OperationalError(str(exc)) from None

    def _landed(self) -> bool:
        """Whether this session's next commit is already in the table's commit record."""
        assert self._db is not None
        row = self._db.execute(
            f"SELECT seq, holder FROM {MARKER_TABLE} WHERE token = ?", (self._token,)
        ).fetchone()
        return row is not None and int(row[0]) == self._seq + 1 and row[1] == self._holder

    def outputs_by_key(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The table's rows as ``(key, record)``, read a few hundred at a time."""
        if self._db is None or not self._created:
            return
        names = self.columns.names
        columns = ", ".join(quote(name) for name in names)
        cursor = self._db.execute(f"SELECT {columns} FROM {quote(self.table)}")
        while rows := cursor.fetchmany(500):
            for row in rows:
                record = dict(zip(names, row, strict=True))
                yield str(record[self.key]), record

    def drop_keys(self, keys: list[str]) -> None:
        """Delete the rows of ``keys`` (items chosen for a rerun) in one transaction."""
        if self._db is None or not self._created or not keys:
            return
        db = self._db
        db.begin()
        try:
            for at in range(0, len(keys), 500):
                chunk = keys[at : at + 500]
                marks = ", ".join("?" for _ in chunk)
                db.execute(
                    f"DELETE FROM {quote(self.table)} WHERE {quote(self.key)} IN ({marks})",
                    tuple(chunk),
                )
        except BaseException:
            with contextlib.suppress(Exception):
                db.rollback()
            raise
        db.commit()

    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def for_shard(self, index: int) -> SqlSink:
        """The sink of one shard of a run split across workers: the same table, with a
        commit record of its own (shards hold different keys, so upserts never meet)."""
        shard = copy.copy(self)
        shard.shard = index
        shard._db, shard._created, shard._token, shard._seq = None, False, "", 0
        shard._holder = ""
        return shard

    def clear_shards(self) -> None:
        """Nothing: a table has no shard files."""
        return None

    def join_shards(self, count: int) -> None:
        """Nothing: the shards upserted into the table itself."""
        return None


def write_sql(
    url: str,
    table: str,
    *,
    key: str = "key",
    columns: dict[str, str] | None = None,
    batch_size: int = 1000,
) -> SqlSink:
    """Upsert outputs into a SQLite or PostgreSQL table, exactly once per item.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://user@host/dbname``.
        table: the table; created on the first write if it does not exist (the
            key column as its primary key), else it must have a unique key column.
        key: the column that holds each item's key (an output field of that name
            must equal the key).
        columns: column name -> type (``string``, ``int64``, ``float64``, ``bool``,
            ``json``); default: the existing table's, or fixed by the first output.
        batch_size: rows per transaction (the writer also commits every 0.5 s).

    Rows are written in bulk (``executemany`` on SQLite, ``COPY`` on PostgreSQL)
    and upserted on the key, in the same transaction as the run's journal.
    """
    return SqlSink(url, table, key, columns, batch_size)
