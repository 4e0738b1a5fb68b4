"""One connection to SQLite or PostgreSQL, and what differs between them: quoting,
column types both ways (headrace's to SQL when a table is made, SQL's to
headrace's when one exists), and bulk upserts on a key column."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import re
import sqlite3
from pathlib import Path
from typing import Any

from ..services.secrecy import scrub_text, scrub_url
from . import column_types

__all__ = [
    "Database",
    "connect",
    "create_table",
    "holds_nul",
    "psycopg_module",
    "quote",
    "sql_type",
    "sqlite_cell",
    "upsert_rows",
    "without_password",
]


class Database:
    """One connection to SQLite or PostgreSQL, with what differs between them.

    Args:
        url: ``sqlite:///path`` or ``postgresql://...``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = url.removeprefix("sqlite:///")
            self.path = Path(path)
            self.connection: Any = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
            self.placeholder = "?"
        elif url.split("://", 1)[0] in ("postgresql", "postgres", "postgresql+psycopg"):
            self.dialect = "postgresql"
            psycopg = psycopg_module()
            dsn = "postgresql://" + url.split("://", 1)[1]
            try:
                self.connection = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise ConnectionError(
                    f"cannot connect to {scrub_url(url)}: {scrub_text(str(exc))}"
                ) from None
            self.placeholder = "%s"
        else:
            raise ValueError(
                f"unsupported database URL {scrub_url(url)!r}: use sqlite:///path.db or postgresql://..."
            )

    def execute(self, statement: str, parameters: tuple[Any, ...] = ()) -> Any:
        """Run one statement (``?`` placeholders in either dialect); return the cursor."""
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s")
        return self.connection.execute(statement, parameters)

    def begin(self) -> None:
        """Start a transaction."""
        self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")

    def commit(self) -> None:
        """Commit the transaction."""
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll the transaction back."""
        self.execute("ROLLBACK")

    def table_columns(self, table: str) -> dict[str, str] | None:
        """The columns of ``table`` as headrace column types, or ``None`` if it does not exist."""
        if self.dialect == "sqlite":
            rows = self.execute(f"PRAGMA table_info({quote(table)})").fetchall()
            found = [(str(r[1]), str(r[2]).upper()) for r in rows]
        else:
            schema, _, name = table.rpartition(".")
            rows = self.execute(
                "SELECT column_name, data_type, numeric_precision, numeric_scale "
                "FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = coalesce(nullif(?, ''), current_schema()) "
                "ORDER BY ordinal_position",
                (name, schema),
            ).fetchall()
            found = [(str(r[0]), _with_digits(str(r[1]).upper(), r[2], r[3])) for r in rows]
        if not found:
            return None
        return {name: _column_type(kind) for name, kind in found}

    def has_unique(self, table: str, column: str) -> bool:
        """Whether ``column`` alone is the primary key or a unique index of ``table``."""
        if self.dialect == "sqlite":
            pk = [r[1] for r in self.execute(f"PRAGMA table_info({quote(table)})") if r[5]]
            if pk == [column]:
                return True
            for index in self.execute(f"PRAGMA index_list({quote(table)})").fetchall():
                if index[2]:
                    info = self.execute(f"PRAGMA index_info({quote(index[1])})").fetchall()
                    if [r[2] for r in info] == [column]:
                        return True
            return False
        row = self.execute(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = ?::regclass AND i.indisunique AND i.indnatts = 1 "
            "AND a.attname = ?",
            (table, column),
        ).fetchone()
        return row is not None

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def connect(url: str) -> Database:
    """Open a :class:`Database` from its URL."""
    return Database(url)


def quote(name: str) -> str:
    """A (possibly ``schema.``-qualified) identifier, quoted for SQL."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


_SQL_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {
        "string": "TEXT",
        "int64": "INTEGER",
        "float64": "REAL",
        "bool": "BOOLEAN",
        "json": "TEXT",
    },
    "postgresql": {
        "string": "TEXT",
        "int64": "BIGINT",
        "float64": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "json": "JSONB",
    },
}


def _with_digits(data_type: str, precision: Any, scale: Any) -> str:
    """PostgreSQL's ``numeric`` with its digits, as ``NUMERIC(10, 2)``."""
    if data_type == "NUMERIC" and isinstance(precision, int) and isinstance(scale, int):
        return f"NUMERIC({precision}, {scale})"
    return data_type


def _column_type(sql_type: str) -> str:
    """The headrace column type that an existing SQL column takes."""
    if "JSON" in sql_type:
        return "json"
    if "BOOL" in sql_type:
        return "bool"
    if "INT" in sql_type:
        return "int64"
    if sql_type.startswith("TIMESTAMP"):
        return "timestamp[us, tz=UTC]" if "WITH TIME ZONE" in sql_type else "timestamp[us]"
    if sql_type in ("BYTEA", "BLOB"):
        return "binary"
    digits = re.fullmatch(r"(?:NUMERIC|DECIMAL)\((\d+), ?(\d+)\)", sql_type)
    if digits is not None and 1 <= int(digits[1]) <= 38:
        return f"decimal128({int(digits[1])}, {int(digits[2])})"
    if any(word in sql_type for word in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "float64"
    return "string"


def sql_type(dialect: str, kind: str) -> str:
    """The SQL type a column of ``kind`` is created with. SQLite keeps a decimal and a
    timestamp as text (its NUMERIC would make a decimal a float)."""
    family = column_types.family(kind)
    if family is None:
        return _SQL_TYPES[dialect][kind]
    if dialect == "sqlite":
        return "BLOB" if family == "binary" else "TEXT"
    if family == "decimal":
        return "NUMERIC" + kind[len("decimal128") :]
    if family == "timestamp":
        return "TIMESTAMPTZ" if ", tz=" in kind else "TIMESTAMP"
    return "BYTEA"


def psycopg_module() -> Any:
    """psycopg 3, or one line saying how to install it."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - installed with the extra
        raise ImportError("PostgreSQL needs psycopg 3: pip install 'headrace[postgres]'") from exc
    return psycopg


def upsert_rows(
    db: Database, table: str, names: list[str], key: str, rows: list[list[Any]]
) -> None:
    """Insert ``rows``, replacing the row of a key already there, in bulk.

    SQLite: one ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE``.
    PostgreSQL: ``COPY`` into a temporary table, then one ``INSERT ... SELECT
    ... ON CONFLICT DO UPDATE``. Runs inside the caller's transaction.
    """
    columns = ", ".join(quote(n) for n in names)
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != key)
    conflict = (
        f"ON CONFLICT ({quote(key)}) DO UPDATE SET {updates}"
        if updates
        else f"ON CONFLICT ({quote(key)}) DO NOTHING"
    )
    if db.dialect == "sqlite":
        marks = ", ".join("?" for _ in names)
        db.connection.executemany(
            f"INSERT INTO {quote(table)} ({columns}) VALUES ({marks}) {conflict}", rows
        )
        return
    db.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS headrace_stage "
        f"(LIKE {quote(table)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with db.connection.cursor() as cursor:
        with cursor.copy(f"COPY headrace_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {quote(table)} ({columns}) "
            f"SELECT {columns} FROM headrace_stage {conflict}"
        )
        cursor.execute("TRUNCATE headrace_stage")


def without_password(url: str) -> str:
    """``url`` with its password left out (the user kept)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"


def create_table(db: Database, name: str, statement: str) -> None:
    """``CREATE TABLE IF NOT EXISTS``, once even when several sessions run it at the same
    moment (a cluster run's shards writing one table): PostgreSQL's is not safe against
    that (two creators meet on its catalog's unique index, ``pg_type_typname_nsp_index``),
    so there it runs under a transaction-scoped advisory lock on the table's name."""
    if db.dialect != "postgresql":
        db.execute(statement)
        return
    db.begin()
    try:
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (name,))
        db.execute(statement)
    except BaseException:
        with contextlib.suppress(Exception):
            db.rollback()
        raise
    db.commit()


# a NUL in JSON text: \u0000 after an even number of backslashes (an odd number
# escapes the backslash instead)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def sqlite_cell(cell: Any) -> Any:
    """A cell as SQLite stores it: decimals and datetimes as text."""
    if isinstance(cell, decimal.Decimal):
        return str(cell)
    if isinstance(cell, datetime.datetime):
        return cell.isoformat()
    return cell


def holds_nul(cell: Any, json_text: bool) -> bool:
    """Whether a text cell holds U+0000 (in a JSON column, also as the escape ``\\u0000``);
    bytes (a ``BYTEA`` column) may hold any byte."""
    if not isinstance(cell, str):
        return False
    return "\x00" in cell or (json_text and _JSON_NUL.search(cell.encode()) is not None)
