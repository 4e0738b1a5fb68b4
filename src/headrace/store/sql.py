"""The run store, written once for both databases: each write over a :class:`Dialect`.

SQLite (:mod:`headrace.store.sqlite`) and PostgreSQL (:mod:`headrace.store.postgres`)
keep the same tables and answer the same questions; what differs between them is
their :class:`~headrace.store.dialect.Dialect`. The reads are
:class:`~headrace.store.sql_reads.SqlReads`; the writes a session makes are here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .lease import Lease, check_free, check_held, end_holder, new_holder, start_holder
from .run_store import DeadRow, Row
from .sql_reads import SqlReads

__all__ = ["SqlRunStore"]


class SqlRunStore(SqlReads):
    """A run's store in a SQL database (see :class:`~headrace.store.run_store.RunStore`);
    made through :class:`~headrace.store.sqlite.SqliteRunStore` or
    :class:`~headrace.store.postgres.PostgresRunStore`."""

    def create(self, definition: dict[str, Any], fingerprint: str) -> None:
        """Record a new run's definition.

        The sink's state starts as ``{"token": <random>}``: a name for this run that
        a sink keeping a journal in its own database files its commits under.
        """
        self._write(
            "INSERT INTO {runs} ({one}, definition, fingerprint, sink_state, created, updated) "
            "VALUES (:run, :definition, :fingerprint, :sink_state, :now, :now)",
            definition=json.dumps(definition, sort_keys=True),
            fingerprint=fingerprint,
            sink_state=json.dumps({"token": uuid.uuid4().hex}),
        )

    def start_session(self, *, forced: bool = False, note: str | None = None) -> int:
        """Record that a run or resume starts; return its session number (1, 2, ...)."""
        sql, values = self._dialect.sql, self._values(forced=forced, note=note)
        with self._dialect.writing() as cursor:
            cursor.execute(sql("SELECT 1 FROM {runs} WHERE {one} = :run{for_update}"), values)
            next_n = sql("SELECT coalesce(max(n), 0) + 1 FROM {sessions} WHERE {of_run}TRUE")
            values["n"] = number = int(cursor.execute(next_n, values).fetchone()[0])
            cursor.execute(
                sql(
                    "INSERT INTO {sessions} ({run_col}n, started, forced, note) "
                    "VALUES ({run_val}:n, :now, :forced, :note)"
                ),
                values,
            )
            if self._holder is not None:
                values["holder"] = self._holder
                cursor.execute(
                    sql("UPDATE {leases} SET session = :n WHERE {one} = :run AND holder = :holder"),
                    values,
                )
        return number

    def force_fingerprint(self, fingerprint: str, pipeline: str | None = None) -> None:
        """Adopt a changed pipeline fingerprint (a forced resume or a rerun; the session
        records it), and the pipeline reference a rerun changed, if given."""
        definition = self.definition() or {}
        if pipeline is not None:
            definition["pipeline"] = pipeline
        self._write(
            "UPDATE {runs} SET fingerprint = :fingerprint, definition = :definition "
            "WHERE {one} = :run",
            fingerprint=fingerprint,
            definition=json.dumps(definition, sort_keys=True),
        )

    def mark_rerun(self, indexes: list[int], sink_state: dict[str, Any]) -> None:
        """In one transaction: the items at ``indexes`` (outputs or dead letters) become
        ``rerun`` (their outputs left the sink), the remaining outputs' positions close
        up (0, 1, 2, ... in their order), and the sink's state becomes ``sink_state``."""
        sql = self._dialect.sql
        values = self._values(sink_state=json.dumps(sink_state, sort_keys=True))
        with self._dialect.writing() as cursor:
            self._fence(cursor, values)
            cursor.executemany(
                sql(
                    "UPDATE {items} SET status = 'rerun', ord = NULL "
                    "WHERE {of_run}idx = :idx AND status IN ('done', 'dead')"
                ),
                [{"run": values["run"], "idx": index} for index in indexes],
            )
            cursor.execute(
                sql(
                    "UPDATE {items} AS t SET ord = r.n FROM (SELECT idx, "
                    "row_number() OVER (ORDER BY ord) - 1 AS n FROM {items} "
                    "WHERE {of_run}ord IS NOT NULL) AS r WHERE {t_of_run}t.idx = r.idx"
                ),
                values,
            )
            cursor.execute(
                sql(
                    "UPDATE {runs} SET sink_state = :sink_state, updated = :now WHERE {one} = :run"
                ),
                values,
            )

    def acquire_lease(self) -> Lease | None:
        """Take the run for this session; return the dead holder's lease if taken over.

        Raises:
            RunBusy: a live session holds it.
        """
        holder, host, pid, machine = new_holder()
        sql = self._dialect.sql
        values = self._values(holder=holder, host=host, pid=pid, machine=machine)
        with self._dialect.writing() as cursor:
            self._dialect.lock_run(cursor)  # one taker at a time, even with no lease row yet
            current = self._lease(cursor.execute(sql(self._LEASE), values).fetchone())
            values["at"] = now = float(cursor.execute(sql("SELECT {clock}"), values).fetchone()[0])
            check_free(current, holder, self._dialect.lease_where, now)
            cursor.execute(
                sql(
                    "INSERT INTO {leases} ({one}, holder, session, host, pid, acquired, "
                    "heartbeat, machine) VALUES (:run, :holder, 0, :host, :pid, :at, :at, "
                    ":machine) ON CONFLICT ({one}) DO UPDATE SET holder = excluded.holder, "
                    "session = 0, host = excluded.host, pid = excluded.pid, "
                    "acquired = excluded.acquired, heartbeat = excluded.heartbeat, "
                    "machine = excluded.machine"
                ),
                values,
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
            renewed = self._write(
                "UPDATE {leases} SET heartbeat = {clock} WHERE {one} = :run AND holder = :holder",
                holder=holder,
            )
            check_held(holder if renewed else None, holder, self._dialect.lease_where)

        self._dialect.retrying("heartbeat", once)

    def release_lease(self) -> None:
        """Give the lease back (if this session still holds it)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            end_holder(holder)
            self._write(
                "DELETE FROM {leases} WHERE {one} = :run AND holder = :holder", holder=holder
            )

    def set_total(self, total: int) -> None:
        """Record how many records the source holds."""
        self._write("UPDATE {runs} SET total = :total WHERE {one} = :run", total=total)

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
        values = self._values(
            watermark=watermark,
            key_digest=key_digest,
            sink_state=json.dumps(sink_state, sort_keys=True),
            holder=self._holder,
        )

        def once(retried: bool) -> None:
            try:
                with self._dialect.writing() as cursor:
                    self._commit_in(cursor, rows, dead, values, session, replace)
            except self._dialect.duplicate:
                # a commit whose answer was lost in an outage may have gone in: its rows
                # are then there already, and going in again is refused by their keys
                if not retried:
                    raise

        self._dialect.retrying("commit", once)

    def _commit_in(
        self,
        cursor: Any,
        rows: list[Row],
        dead: list[DeadRow],
        values: dict[str, Any],
        session: int,
        replace: bool,
    ) -> None:
        sql = self._dialect.sql
        self._fence(cursor, values)
        if replace:
            run = self._dialect.run_id
            for table in ("{items}", "{dead}"):
                cursor.executemany(
                    sql(f"DELETE FROM {table} WHERE {{of_run}}idx = :idx"),
                    [{"run": run, "idx": row[0]} for row in rows],
                )
        self._dialect.insert_items(cursor, rows, session)
        if dead:
            cursor.executemany(
                sql(
                    "INSERT INTO {dead} ({run_col}idx, step, error_type, message, attempts, "
                    "item, finished) VALUES ({run_val}:idx, :step, :error_type, :message, "
                    ":attempts, :item, :now)"
                ),
                [self._dead_values(row, values) for row in dead],
            )
        cursor.execute(
            sql(
                "UPDATE {runs} SET watermark = :watermark, "
                "key_digest = coalesce(:key_digest, key_digest), sink_state = :sink_state, "
                "updated = :now WHERE {one} = :run"
            ),
            values,
        )

    def _fence(self, cursor: Any, values: dict[str, Any]) -> None:
        """Stop a session that lost its lease before it writes (inside its transaction)."""
        if self._holder is not None:
            fence = "SELECT holder FROM {leases} WHERE {one} = :run{for_update}"
            held = cursor.execute(self._dialect.sql(fence), values).fetchone()
            check_held(held and held[0], self._holder, self._dialect.lease_where)

    def _dead_values(self, row: DeadRow, values: dict[str, Any]) -> dict[str, Any]:
        index, step, error_type, message, attempts, item = row
        text = self._dialect.text_in
        return {
            "run": values["run"],
            "now": values["now"],
            "idx": index,
            "step": text(step),
            "error_type": text(error_type),
            "message": text(message),
            "attempts": attempts,
            "item": None if item is None else text(item),
        }

    def forget_outputs(self) -> int:
        """Forget every ``done`` outcome (the sink that held them was set aside), so a
        resume computes those items again; return how many. Dead letters, filtered
        items and dropped repeats stay finished."""
        sql, values = self._dialect.sql, self._values(token=json.dumps({"token": uuid.uuid4().hex}))
        with self._dialect.writing() as cursor:
            forget = sql("DELETE FROM {items} WHERE {of_run}status IN ('done', 'rerun')")
            forgotten = cursor.execute(forget, values).rowcount
            cursor.execute(
                sql(
                    "UPDATE {runs} SET watermark = 0, key_digest = '', sink_state = :token "
                    "WHERE {one} = :run"
                ),
                values,
            )
        return int(forgotten)

    def discard(self) -> None:
        """Forget this run entirely (a new run whose first session was refused before
        anything ran), so the run directory holds no run again."""
        sql, values = self._dialect.sql, self._values()
        with self._dialect.writing() as cursor:
            for table in ("{items}", "{dead}", "{sessions}", "{samples}"):
                cursor.execute(sql(f"DELETE FROM {table} WHERE {{of_run}}TRUE"), values)
            cursor.execute(sql("DELETE FROM {runs} WHERE {one} = :run"), values)

    def record_sample(self, session: int, seq: int, t: float, data: dict[str, Any]) -> None:
        """Write (or overwrite) one sample of the run's time series."""
        self._write(
            "INSERT INTO {samples} ({run_col}session, seq, t, data) "
            "VALUES ({run_val}:session, :seq, :t, :data) ON CONFLICT ({run_col}session, seq) "
            "DO UPDATE SET t = excluded.t, data = excluded.data",
            session=session,
            seq=seq,
            t=t,
            data=json.dumps(data),
        )

    def thin_samples(self, session: int) -> None:
        """Drop every other sample of ``session``, keeping its first and its last."""
        self._write(
            "DELETE FROM {samples} WHERE {of_run}session = :session AND seq IN ("
            "SELECT seq FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS r, "
            "count(*) OVER () AS n FROM {samples} WHERE {of_run}session = :session) AS ranked "
            "WHERE r = (r / 2) * 2 AND r < n)",
            session=session,
        )
