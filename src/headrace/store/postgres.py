"""The PostgreSQL run store: runs kept in a database that several machines can reach.

It keeps what :class:`~headrace.store.sqlite.SqliteRunStore` keeps, in the same
tables with a ``run`` column added (``headrace_runs``, ``headrace_items``,
``headrace_dead``, ``headrace_sessions``), so one database holds many runs, each
named by its run directory's name. Connections come from a pool (psycopg 3);
a batch of finished items goes in with ``COPY``, in one transaction with the
watermark and the sink's state.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..secrecy import scrub_url
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
from .pg_connection import open_pool, outlasting

__all__ = ["PostgresRunStore"]

T = TypeVar("T")
_log = logging.getLogger("headrace.run")


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


def _dead_item(row: Any) -> FinishedItem:
    return FinishedItem(row[0], stored_key(row[1]), *row[2:])


def _holdable(row: DeadRow) -> tuple[Any, ...]:
    return tuple(v.replace(_NUL, "\ufffd") if isinstance(v, str) else v for v in row)


class PostgresRunStore:
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
        self._holder: str | None = None
        self._pool = open_pool(url)

    @classmethod
    def exists(cls, url: str, name: str) -> bool:
        """Whether the database holds a run of that name."""
        store = cls(url, name)
        try:
            return store.definition() is not None
        finally:
            store.close()

    def _one(self, query: str, *parameters: Any) -> Any:
        with self._pool.connection() as connection:
            return connection.execute(query, (self.name, *parameters)).fetchone()

    def _all(self, query: str, *parameters: Any) -> list[Any]:
        with self._pool.connection() as connection:
            return list(connection.execute(query, (self.name, *parameters)).fetchall())

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()

    # --- definition and sessions ---------------------------------------------

    def definition(self) -> dict[str, Any] | None:
        """The stored run definition, or ``None`` for a new run."""
        row = self._one("SELECT definition FROM headrace_runs WHERE run = %s")
        return None if row is None else dict(json.loads(row[0]))

    def fingerprint(self) -> str | None:
        """The pipeline fingerprint the run was started (or last forced) with."""
        row = self._one("SELECT fingerprint FROM headrace_runs WHERE run = %s")
        return None if row is None else str(row[0])

    def create(self, definition: dict[str, Any], fingerprint: str) -> None:
        """Record a new run's definition (see :meth:`SqliteRunStore.create`)."""
        now = time.time()
        with self._pool.connection() as connection:
            connection.execute(
                "INSERT INTO headrace_runs "
                "(run, definition, fingerprint, sink_state, created, updated) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    self.name,
                    json.dumps(definition, sort_keys=True),
                    fingerprint,
                    json.dumps({"token": uuid.uuid4().hex}),
                    now,
                    now,
                ),
            )

    # --- the lease (one session at a time; see headrace.store.lease) ----------

    # read with the database's clock: a lease's age is judged on it, not on this host's
    _LEASE = (
        "SELECT holder, session, host, pid, acquired, heartbeat, machine, "
        "extract(epoch from clock_timestamp())::double precision FROM headrace_leases "
    )

    def lease(self) -> Lease | None:
        """The run's lease as stored (its holder may be dead: see :meth:`Lease.alive`)."""
        row = self._one(self._LEASE + "WHERE run = %s")
        return None if row is None else Lease(*row)

    def acquire_lease(self) -> Lease | None:
        """Take the run for this session; return the dead holder's lease if taken over.

        Raises:
            RunBusy: a live session holds it.
        """
        holder, host, pid, machine = new_holder()
        with self._pool.connection() as connection:
            # one taker at a time, even while no lease row exists yet
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.name,))
            row = connection.execute(self._LEASE + "WHERE run = %s", (self.name,)).fetchone()
            current = None if row is None else Lease(*row)
            now = float(
                connection.execute("SELECT extract(epoch from clock_timestamp())").fetchone()[0]
            )
            check_free(current, holder, str(self), now)
            connection.execute(
                "INSERT INTO headrace_leases (run, holder, session, host, pid, acquired, "
                "heartbeat, machine) VALUES (%s, %s, 0, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run) DO UPDATE SET holder = excluded.holder, session = 0, "
                "host = excluded.host, pid = excluded.pid, acquired = excluded.acquired, "
                "heartbeat = excluded.heartbeat, machine = excluded.machine",
                (self.name, holder, host, pid, now, now, machine),
            )
        self._holder = holder
        start_holder(holder)
        return current

    def heartbeat(self) -> None:
        """Renew this session's lease.

        Raises:
            LeaseLost: another session took it over.
        """
        holder = self._holder
        if holder is None:
            return

        def once(retried: bool) -> None:
            with self._pool.connection() as connection:
                done = connection.execute(
                    "UPDATE headrace_leases SET heartbeat = extract(epoch from clock_timestamp()) "
                    "WHERE run = %s AND holder = %s",
                    (self.name, holder),
                )
                check_held(holder if done.rowcount else None, holder, str(self))

        self._outlasting("heartbeat", once)

    def _outlasting(self, what: str, once: Callable[[bool], T]) -> T:
        return outlasting(self.url, what, once)

    def release_lease(self) -> None:
        """Give the lease back (if this session still holds it)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            end_holder(holder)
            with self._pool.connection() as connection:
                connection.execute(
                    "DELETE FROM headrace_leases WHERE run = %s AND holder = %s",
                    (self.name, holder),
                )

    def __str__(self) -> str:
        return f"run {self.name!r} in {scrub_url(self.url)}"

    def start_session(self, *, forced: bool = False, note: str | None = None) -> int:
        """Record that a run or resume starts; return its session number (1, 2, ...)."""
        with self._pool.connection() as connection:
            connection.execute(
                "SELECT 1 FROM headrace_runs WHERE run = %s FOR UPDATE", (self.name,)
            )
            row = connection.execute(
                "INSERT INTO headrace_sessions (run, n, started, forced, note) "
                "SELECT %s, coalesce(max(n), 0) + 1, %s, %s, %s FROM headrace_sessions "
                "WHERE run = %s RETURNING n",
                (self.name, time.time(), forced, note, self.name),
            ).fetchone()
            if self._holder is not None:
                connection.execute(
                    "UPDATE headrace_leases SET session = %s WHERE run = %s AND holder = %s",
                    (row[0], self.name, self._holder),
                )
        return int(row[0])

    def force_fingerprint(self, fingerprint: str) -> None:
        """Adopt a changed pipeline fingerprint (a forced resume; the session records it)."""
        with self._pool.connection() as connection:
            connection.execute(
                "UPDATE headrace_runs SET fingerprint = %s WHERE run = %s",
                (fingerprint, self.name),
            )

    def forced_sessions(self) -> list[tuple[int, str | None]]:
        """The sessions that forced a resume, with their notes."""
        rows = self._all(
            "SELECT n, note FROM headrace_sessions WHERE run = %s AND forced ORDER BY n"
        )
        return [(int(n), note) for n, note in rows]

    # --- resume --------------------------------------------------------------

    def watermark(self) -> int:
        """Every source index below this is finished."""
        row = self._one("SELECT watermark FROM headrace_runs WHERE run = %s")
        return int(row[0]) if row else 0

    def key_digest(self) -> str:
        """The digest of the keys below the watermark, in source order."""
        row = self._one("SELECT key_digest FROM headrace_runs WHERE run = %s")
        return str(row[0]) if row else ""

    def finished_above(self, watermark: int) -> dict[int, str]:
        """Source index -> key of the items finished at or above ``watermark``."""
        rows = self._all(
            "SELECT idx, key FROM headrace_items WHERE run = %s AND idx >= %s", watermark
        )
        return {int(idx): str(key) for idx, key in rows}

    def sink_state(self) -> dict[str, Any]:
        """The sink's committed state."""
        row = self._one("SELECT sink_state FROM headrace_runs WHERE run = %s")
        return dict(json.loads(row[0])) if row else {}

    def set_total(self, total: int) -> None:
        """Record how many records the source holds."""
        with self._pool.connection() as connection:
            connection.execute(
                "UPDATE headrace_runs SET total = %s WHERE run = %s", (total, self.name)
            )

    def finished_sessions(self) -> dict[str, int]:
        """Key -> the session that committed it, for every finished item."""
        rows = self._all("SELECT key, session FROM headrace_items WHERE run = %s")
        return {stored_key(k): int(n) for k, n in rows}

    def dead_items(self) -> dict[int, str]:
        """Source index -> key of every dead item (for ``retry-dead``)."""
        rows = self._all("SELECT idx, key FROM headrace_items WHERE run = %s AND status = 'dead'")
        return {int(idx): stored_key(key) for idx, key in rows}

    _DEAD = (
        "SELECT i.idx, i.key, i.status, d.step, d.error_type, d.message, d.attempts, d.item "
        "FROM headrace_items i JOIN headrace_dead d ON d.run = i.run AND d.idx = i.idx "
        "WHERE i.run = %s AND i.status = 'dead'"
    )

    def dead_letters(
        self, *, session: int | None = None, limit: int | None = None
    ) -> list[FinishedItem]:
        """Every dead item with its error in source order; only one session's if given,
        and the first ``limit`` of them if given."""
        query, parameters = self._DEAD, []
        if session is not None:
            query, parameters = query + " AND i.session = %s", [session]
        query += " ORDER BY i.idx" + ("" if limit is None else f" LIMIT {int(limit)}")
        return [_dead_item(row) for row in self._all(query, *parameters)]

    def iter_dead_letters(self) -> Iterator[FinishedItem]:
        """Every dead item in source order, read a few at a time (a server-side cursor)."""
        name = f"dead_{uuid.uuid4().hex}"
        with (
            self._pool.connection() as connection,
            connection.transaction(),
            connection.cursor(name=name) as cursor,
        ):
            cursor.itersize = 500
            cursor.execute(self._DEAD + " ORDER BY i.idx", (self.name,))
            for row in cursor:
                yield _dead_item(row)

    def dead_letter_groups(self, examples: int) -> list[DeadGroup]:
        """The dead letters grouped by step and error type, each with a few examples."""
        groups = self._all(
            "SELECT d.step, d.error_type, count(*) FROM headrace_items i JOIN headrace_dead d "
            "ON d.run = i.run AND d.idx = i.idx WHERE i.run = %s AND i.status = 'dead' "
            "GROUP BY d.step, d.error_type"
        )
        query = self._DEAD + " AND d.step = %s AND d.error_type = %s ORDER BY i.idx LIMIT %s"
        return merge_groups(
            (
                DeadGroup(
                    str(step),
                    str(error_type),
                    int(count),
                    [_dead_item(row) for row in self._all(query, step, error_type, examples)],
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

        With ``replace`` (retrying dead letters), an item's earlier record is replaced;
        ``key_digest`` is kept as it was when not given.
        """

        from psycopg.errors import UniqueViolation

        def once(retried: bool) -> None:
            try:
                self._commit_once(rows, dead, watermark, sink_state, session, replace, key_digest)
            except UniqueViolation:
                # a commit whose answer was lost in the outage may have gone in: its rows
                # are then there already, and going in again is refused by their keys
                if not retried:
                    raise

        self._outlasting("commit", once)

    def _commit_once(
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
        name = self.name
        with self._pool.connection() as connection, connection.cursor() as cursor:
            if self._holder is not None:  # the fence: a session that lost its lease stops
                held = cursor.execute(
                    "SELECT holder FROM headrace_leases WHERE run = %s FOR UPDATE", (name,)
                ).fetchone()
                check_held(held and held[0], self._holder, str(self))
            if replace:
                indices = [r[0] for r in rows]
                for table in ("headrace_items", "headrace_dead"):
                    cursor.execute(
                        f"DELETE FROM {table} WHERE run = %s AND idx = ANY(%s)", (name, indices)
                    )
            with cursor.copy(
                "COPY headrace_items (run, idx, key, status, session) FROM STDIN"
            ) as copy:
                for index, key, status in rows:
                    copy.write_row((name, index, key_to_store(key), status, session))
            if dead:
                cursor.executemany(
                    "INSERT INTO headrace_dead "
                    "(run, idx, step, error_type, message, attempts, item, finished) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(name, *_holdable(row), now) for row in dead],
                )
            cursor.execute(
                "UPDATE headrace_runs SET watermark = %s, "
                "key_digest = coalesce(%s, key_digest), sink_state = %s, updated = %s "
                "WHERE run = %s",
                (watermark, key_digest, json.dumps(sink_state, sort_keys=True), now, name),
            )

    def forget_outputs(self) -> int:
        """Forget every ``done`` outcome (see :meth:`SqliteRunStore.forget_outputs`)."""
        with self._pool.connection() as connection:
            done = connection.execute(
                "DELETE FROM headrace_items WHERE run = %s AND status = 'done'", (self.name,)
            )
            connection.execute(
                "UPDATE headrace_runs SET watermark = 0, key_digest = '', sink_state = %s "
                "WHERE run = %s",
                (json.dumps({"token": uuid.uuid4().hex}), self.name),
            )
        return int(done.rowcount)

    def discard(self) -> None:
        """Forget this run entirely (see :meth:`SqliteRunStore.discard`)."""
        with self._pool.connection() as connection:
            for table in (
                "headrace_items",
                "headrace_dead",
                "headrace_sessions",
                "headrace_samples",
                "headrace_runs",
            ):
                connection.execute(f"DELETE FROM {table} WHERE run = %s", (self.name,))

    # --- the time series -------------------------------------------------------

    def record_sample(self, session: int, seq: int, t: float, data: dict[str, Any]) -> None:
        """Write (or overwrite) one sample of the run's time series."""
        with self._pool.connection() as connection:
            connection.execute(
                "INSERT INTO headrace_samples (run, session, seq, t, data) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run, session, seq) "
                "DO UPDATE SET t = EXCLUDED.t, data = EXCLUDED.data",
                (self.name, session, seq, t, json.dumps(data)),
            )

    def thin_samples(self, session: int) -> None:
        """Drop every other sample of ``session``, keeping its first and its last."""
        query = THIN_SAMPLES.format(table="headrace_samples", run="run = %s AND ", p="%s")
        with self._pool.connection() as connection:
            connection.execute(query, (self.name, session, self.name, session))

    def samples(self) -> list[Sample]:
        """The run's time series, every session's, in order."""
        return decode_samples(
            self._all(
                "SELECT session, seq, t, data FROM headrace_samples WHERE run = %s "
                "ORDER BY session, seq"
            )
        )

    def latest_sample(self) -> Sample | None:
        """The last sample of the run's latest session (``None`` before the first)."""
        found = decode_samples(
            self._all(
                "SELECT session, seq, t, data FROM headrace_samples WHERE run = %s "
                "ORDER BY session DESC, seq DESC LIMIT 1"
            )
        )
        return found[0] if found else None

    def sessions(self) -> list[tuple[int, float, bool, str | None]]:
        """Every session: its number, when it started, whether it was forced, its note."""
        rows = self._all(
            "SELECT n, started, forced, note FROM headrace_sessions WHERE run = %s ORDER BY n"
        )
        return [(int(n), float(t), bool(f), note) for n, t, f, note in rows]

    # --- status --------------------------------------------------------------

    def status(self) -> RunStatus:
        """Counts, the last error of each step, timing and the source's size."""
        counts = dict(
            self._all("SELECT status, count(*) FROM headrace_items WHERE run = %s GROUP BY status")
        )
        run = self._one(
            "SELECT definition, watermark, created, updated, total FROM headrace_runs "
            "WHERE run = %s"
        )
        sessions = self._one("SELECT count(*) FROM headrace_sessions WHERE run = %s")[0]
        last = self._all(
            "SELECT DISTINCT ON (step) step, error_type, message, "
            "count(*) OVER (PARTITION BY step) FROM headrace_dead WHERE run = %s "
            "ORDER BY step, finished DESC, idx DESC"
        )
        errors = [StepError(str(s), int(n), str(t), str(m)) for s, t, m, n in last]
        return RunStatus.from_rows(counts, run, int(sessions), errors)
