"""What differs between the databases a run store lives in: the :class:`Dialect`.

The run store's operations are written once (:mod:`headrace.store.sql_reads` reads,
:mod:`headrace.store.sql` writes), as SQL templates; SQLite
(:mod:`headrace.store.sqlite`, the embedded default) and PostgreSQL
(:mod:`headrace.store.postgres`, shared by machines) each fill them in:

- the tables' names, and how a row names its run: SQLite's file holds one run
  (its single-row tables are keyed ``id = 1``, the others hold no run column),
  PostgreSQL's database holds many (every table has a ``run`` column);
- the parameter style (``:name`` in the templates; PostgreSQL's becomes ``%(name)s``);
- how a transaction is opened, how a batch of items goes in (``executemany`` or
  ``COPY``), how rows are streamed, and how an outage of the database is waited out;
- whose clock judges a lease (this host's for a file, the server's for a database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .run_store import Row

__all__ = ["Dialect"]

T = TypeVar("T")


class Dialect(Protocol):
    """What differs between the databases a run store lives in.

    The templates below use these names, which :meth:`sql` fills in: the tables
    (``{runs}``, ``{items}``, ``{dead}``, ``{leases}``, ``{sessions}``, ``{samples}``);
    ``{one}``, the key column of the single-row-per-run tables (runs, leases);
    ``{of_run}``, ``{i_of_run}`` and ``{t_of_run}``, a condition prefix selecting this
    run's rows (unaliased, of ``{items} i`` and of ``{items} AS t``); ``{run_col}`` and
    ``{run_val}``, the run column and value of an insert; ``{same_run}``, the join
    condition's prefix; ``{clock}``, the lease clock; ``{for_update}``, a row lock
    where there is one.
    """

    where: str
    """The store as messages name it ("the run store ...")."""
    lease_where: str
    """The run as the lease's messages name it ("the run in ...")."""
    run_id: Any
    """The value of ``:run``: this run's key in its single-row tables."""
    duplicate: type[Exception]
    """What a row inserted twice raises (a commit retried after a lost answer)."""

    def sql(self, template: str) -> str:
        """``template`` in this database's words (cached)."""

    def reading(self) -> AbstractContextManager[Any]:
        """A cursor for reads (no write lock taken)."""

    def writing(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction: committed on exit, rolled back on an error."""

    def retrying(self, what: str, once: Callable[[bool], T]) -> T:
        """``once(retried)``, waiting out an outage of the database where there can be one;
        an error of the database itself becomes a :class:`StorageError` naming ``what``."""

    def insert_items(self, cursor: Any, rows: list[Row], session: int) -> None:
        """Insert finished items (the hot path: the fastest way this database has)."""

    def stream(self, query: str, parameters: dict[str, Any]) -> Iterator[Any]:
        """The rows of ``query``, read a few hundred at a time."""

    def lock_run(self, cursor: Any) -> None:
        """Serialise takers of this run's lease inside the cursor's transaction."""

    def key_out(self, stored: Any) -> str:
        """The key as it was given (from what the database holds)."""

    def text_in(self, text: str) -> str:
        """A dead letter's text as the database can hold it."""

    def close(self) -> None:
        """Release the connection or pool."""
