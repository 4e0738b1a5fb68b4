"""SQL: a query as a streaming source of ``dict`` records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from .records import BadRecord, Source
from .sql import connect, without_password

__all__ = ["SqlSource", "read_sql"]


class SqlSource(Source):
    """Streams the rows of a query as ``dict`` records; see :func:`read_sql`."""

    def __init__(self, url: str, query: str, key: str | None, fetch: int = 1000) -> None:
        self.url = url
        self.requires = ("psycopg",) if url.startswith(("postgresql://", "postgres://")) else ()
        self.query = query
        self.key = key
        self.fetch = fetch

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "sql",
            "url": without_password(self.url),
            "query": self.query,
            "key": self.key,
        }

    def check(self) -> None:
        """Refuse a database that cannot be reached, a bad query, or a missing key column."""
        try:
            db = connect(self.url)
        except ConnectionError as exc:
            raise ValueError(str(exc)) from exc
        try:
            cursor = db.execute(f"SELECT * FROM ({self.query}) AS headrace_query LIMIT 0")
            names = [d[0] for d in cursor.description]
        except Exception as exc:  # the driver's own error types: sqlite3.Error, psycopg.Error
            raise ValueError(f"the query failed: {exc}") from exc
        finally:
            db.close()
        if self.key is not None and self.key not in names:
            raise ValueError(f"the query has no key column {self.key!r} (columns: {names})")

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        db = connect(self.url)
        try:
            if db.dialect == "postgresql":
                # a server-side cursor: the server holds the result, we fetch a slice at a time
                db.begin()
                cursor = db.connection.cursor(name=f"headrace_{uuid.uuid4().hex[:12]}")
                cursor.execute(self.query)
            else:
                cursor = db.connection.execute(self.query)
            names: list[str] | None = None
            number = 0
            while rows := cursor.fetchmany(self.fetch):
                if names is None:
                    names = [d[0] for d in cursor.description]
                for row in rows:
                    value = dict(zip(names, row, strict=True))
                    if self.key is None:
                        yield f"row:{number}", value
                    elif value.get(self.key) is None:
                        yield BadRecord(
                            f"query row {number}",
                            f"the key column {self.key!r} is empty",
                            repr(value)[:200],
                        )
                    else:
                        yield str(value[self.key]), value
                    number += 1
        finally:
            db.close()


def read_sql(url: str, query: str, *, key: str | None = None) -> SqlSource:
    """Stream the rows of a query, 1000 at a time, as ``dict`` records.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://user@host/dbname``.
        query: a ``SELECT``; give it an ``ORDER BY`` so that a resume reads the
            rows in the same order (a resume checks each finished row's key).
        key: the column that identifies each row; default: the row's position.

    On PostgreSQL the query runs in a server-side cursor, so memory stays at one
    slice whatever the result's size.
    """
    return SqlSource(url, query, key)
