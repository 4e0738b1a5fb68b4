"""The PostgreSQL run store: runs kept in a database that several machines can reach.

It keeps what :class:`~headrace.store.sqlite.SqliteRunStore` keeps, in the same
tables with a ``run`` column added (``headrace_runs``, ``headrace_items``,
``headrace_dead``, ``headrace_sessions``), so one database holds many runs, each
named by its run directory's name. Connections come from a pool (psycopg 3);
a batch of finished items goes in with ``COPY``, in one transaction with the
watermark and the sink's state.

The operations are :class:`~headrace.store.sql.SqlRunStore`'s, written once for
both databases; :class:`PostgresDialect` says how they run on a server.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from ..errors import StorageError
from ..services.secrecy import scrub_text, scrub_url
from .pg_connection import open_pool, outlasting
from .run_store import Row
from .sql import SqlRunStore

__all__ = ["PostgresDialect", "PostgresRunStore"]

T = TypeVar("T")


# PostgreSQL's text cannot hold U+0000. A key holding it is stored with each NUL as the
# noncharacter U+FFFE and U+FFFE in front (no real text holds one), and read back exact;
# every other key is stored as it is. Dead letters' words lose their NULs (shown as U+FFFD).
_NUL, _MARK = "\x00", "\ufffe"


def key_to_store(key: str) -> str:
    """``key`` as PostgreSQL can hold it (see above)."""
    return _MARK + key.replace(_NUL, _MARK) if _NUL in key else key


def stored_key(stored: Any) -> str:
    """The key :func:`key_to_store` stored."""
    text = str(stored)
    return text[1:].replace(_MARK, _NUL) if text.startswith(_MARK) else text


_PARAMETER = re.compile(r"(?<![:\w]):([a-z_]+)")  # :name, not a ::cast


class PostgresDialect:
    """How the run store's operations run on a PostgreSQL server (see
    :class:`~headrace.store.sql.Dialect`): a pool of connections, every table
    keyed by the run's name, ``COPY`` for items, the server's clock for the lease,
    and an outage of the server waited out (:func:`~headrace.store.pg_connection.outlasting`).
    """

    _NAMES: ClassVar[dict[str, str]] = {
        "runs": "headrace_runs",
        "items": "headrace_items",
        "dead": "headrace_dead",
        "leases": "headrace_leases",
        "sessions": "headrace_sessions",
        "samples": "headrace_samples",
        "one": "run",
        "of_run": "run = :run AND ",
        "i_of_run": "i.run = :run AND ",
        "t_of_run": "t.run = :run AND ",
        "run_col": "run, ",
        "run_val": ":run, ",
        "same_run": "d.run = i.run AND ",
        # read with the database's clock: a lease's age is judged on it, not on a host's
        "clock": "extract(epoch from clock_timestamp())::double precision",
        "for_update": " FOR UPDATE",
    }

    def __init__(self, url: str, name: str) -> None:
        from psycopg.errors import UniqueViolation

        self.url = url
        self.run_id = name
        self.lease_where = f"run {name!r} in {scrub_url(url)}"
        self.where = f"the run store of {self.lease_where}"
        self.duplicate: type[Exception] = UniqueViolation
        self._cache: dict[str, str] = {}
        self._pool = open_pool(url)

    def sql(self, template: str) -> str:
        """``template`` with the shared tables' names and psycopg's ``%(name)s``."""
        query = self._cache.get(template)
        if query is None:
            query = _PARAMETER.sub(r"%(\1)s", template.format(**self._NAMES))
            self._cache[template] = query
        return query

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """A cursor on a connection of the pool."""
        with self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    writing = reading  # a pool's connection is one transaction, committed when handed back

    def retrying(self, what: str, once: Callable[[bool], T]) -> T:
        """``once(retried)``, again while the server does not answer (up to
        ``$HEADRACE_STORE_OUTAGE_S``); another error of the database is named in one line."""
        import psycopg

        try:
            return outlasting(self.url, what, once)
        except psycopg.DatabaseError as exc:  # not an outage: outlasting waits those out
            raise StorageError(
                f"cannot write a {what} to {self.where}: {scrub_text(str(exc)).strip()}"
            ) from None

    def insert_items(self, cursor: Any, rows: list[Row], session: int) -> None:
        """``COPY``: the fastest way in."""
        name = self.run_id
        copy_in = "COPY headrace_items (run, idx, key, status, ord, session) FROM STDIN"
        with cursor.copy(copy_in) as copy:
            for index, key, status, position in rows:
                copy.write_row((name, index, key_to_store(key), status, position, session))

    def stream(self, query: str, parameters: dict[str, Any]) -> Iterator[Any]:
        """The rows of ``query`` through a server-side cursor, 500 at a time."""
        name = f"dead_{uuid.uuid4().hex}"
        with (
            self._pool.connection() as connection,
            connection.transaction(),
            connection.cursor(name=name) as cursor,
        ):
            cursor.itersize = 500
            cursor.execute(query, parameters)
            yield from cursor

    def lock_run(self, cursor: Any) -> None:
        """A transaction-scoped advisory lock on the run's name."""
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.run_id,))

    def key_out(self, stored: Any) -> str:
        """See :func:`stored_key`."""
        return stored_key(stored)

    def text_in(self, text: str) -> str:
        """``text`` with each NUL shown as U+FFFD (a dead letter's words)."""
        return text.replace(_NUL, "\ufffd")

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


class PostgresRunStore(SqlRunStore):
    """The run named ``name`` in the PostgreSQL database at ``url``.

    Args:
        url: ``postgresql://user@host:port/dbname`` (a password is best kept in
            ``~/.pgpass`` or ``PGPASSWORD``: the URL is shown in messages).
        name: the run's name (a run directory's name).

    Raises:
        ConnectionError: the database cannot be reached.
    """

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        super().__init__(PostgresDialect(url, name))

    @classmethod
    def exists(cls, url: str, name: str) -> bool:
        """Whether the database holds a run of that name."""
        store = cls(url, name)
        try:
            return store.definition() is not None
        finally:
            store.close()

    def __str__(self) -> str:
        return f"run {self.name!r} in {scrub_url(self.url)}"
