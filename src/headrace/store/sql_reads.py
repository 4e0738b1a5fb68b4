"""The run store's reads, written once for both databases over a :class:`Dialect`.

What is read back is checked here, once for both: a definition, a sink state, a
lease or a dead letter that is not what a session wrote is a
:class:`~headrace.errors.StorageError` naming the store, never a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ..errors import StorageError
from .dialect import Dialect
from .lease import Lease
from .run_store import (
    DeadGroup,
    FinishedItem,
    RunStatus,
    Sample,
    StepError,
    decode_samples,
    merge_groups,
)

__all__ = ["SqlReads"]


class SqlReads:
    """What a run's SQL store answers (status, resume, reports), over a dialect;
    :class:`~headrace.store.sql.SqlRunStore` adds the writes."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._holder: str | None = None

    def _values(self, **values: Any) -> dict[str, Any]:
        return {"run": self._dialect.run_id, "now": time.time(), **values}

    def _one(self, template: str, **values: Any) -> Any:
        with self._dialect.reading() as cursor:
            return cursor.execute(self._dialect.sql(template), self._values(**values)).fetchone()

    def _all(self, template: str, **values: Any) -> list[Any]:
        with self._dialect.reading() as cursor:
            query = self._dialect.sql(template)
            return list(cursor.execute(query, self._values(**values)).fetchall())

    def _write(self, template: str, **values: Any) -> int:
        with self._dialect.writing() as cursor:
            done = cursor.execute(self._dialect.sql(template), self._values(**values))
            return int(done.rowcount)

    def _json_object(self, text: Any, what: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            raise StorageError(
                f"{self._dialect.where} is damaged: its {what} is not a JSON object"
            ) from None
        return value

    def close(self) -> None:
        """Close the connection (or pool)."""
        self._dialect.close()

    def definition(self) -> dict[str, Any] | None:
        """The stored run definition, or ``None`` for a new store."""
        row = self._one("SELECT definition FROM {runs} WHERE {one} = :run")
        return None if row is None else self._json_object(row[0], "run definition")

    def fingerprint(self) -> str | None:
        """The pipeline fingerprint the run was started (or last forced) with."""
        row = self._one("SELECT fingerprint FROM {runs} WHERE {one} = :run")
        return None if row is None else str(row[0])

    def forced_sessions(self) -> list[tuple[int, str | None]]:
        """The sessions that forced a resume, with their notes."""
        rows = self._all("SELECT n, note FROM {sessions} WHERE {of_run}forced ORDER BY n")
        return [(int(n), note) for n, note in rows]

    def sessions(self) -> list[tuple[int, float, bool, str | None]]:
        """Every session: its number, when it started, whether it was forced, its note."""
        rows = self._all(
            "SELECT n, started, forced, note FROM {sessions} WHERE {of_run}TRUE ORDER BY n"
        )
        return [(int(n), float(t), bool(f), note) for n, t, f, note in rows]

    _LEASE = (
        "SELECT holder, session, host, pid, acquired, heartbeat, machine, {clock} "
        "FROM {leases} WHERE {one} = :run"
    )

    def _lease(self, row: Any) -> Lease | None:
        if row is None:
            return None
        try:
            holder, session, host, pid, acquired, heartbeat, machine, now = row
            return Lease(
                str(holder), int(session), str(host), int(pid), float(acquired),
                float(heartbeat), str(machine), float(now),
            )  # fmt: skip
        except (TypeError, ValueError):
            raise StorageError(
                f"{self._dialect.where} is damaged: its lease is not what a session wrote "
                "(remove the lease's row to take the run over)"
            ) from None

    def lease(self) -> Lease | None:
        """The run's lease as stored (its holder may be dead: see :meth:`Lease.alive`),
        read with the store's clock: a lease's age is judged on it, not on this host's."""
        return self._lease(self._one(self._LEASE))

    def watermark(self) -> int:
        """Every source index below this is finished."""
        row = self._one("SELECT watermark FROM {runs} WHERE {one} = :run")
        return int(row[0]) if row else 0

    def key_digest(self) -> str:
        """The digest of the keys below the watermark, in source order."""
        row = self._one("SELECT key_digest FROM {runs} WHERE {one} = :run")
        return str(row[0]) if row else ""

    def finished_above(self, watermark: int) -> dict[int, str]:
        """Source index -> key of the items finished at or above ``watermark``."""
        rows = self._all(
            "SELECT idx, key FROM {items} WHERE {of_run}idx >= :watermark", watermark=watermark
        )
        return {int(idx): self._dialect.key_out(key) for idx, key in rows}

    def sink_state(self) -> dict[str, Any]:
        """The sink's committed state (what its files may hold)."""
        row = self._one("SELECT sink_state FROM {runs} WHERE {one} = :run")
        return {} if row is None else self._json_object(row[0], "sink state")

    def finished_sessions(self) -> dict[str, int]:
        """Key -> the session that committed it, for every finished item."""
        rows = self._all("SELECT key, session FROM {items} WHERE {of_run}TRUE")
        return {self._dialect.key_out(k): int(n) for k, n in rows}

    def dead_items(self) -> dict[int, str]:
        """Source index -> key of every dead item (for ``retry-dead``)."""
        rows = self._all("SELECT idx, key FROM {items} WHERE {of_run}status = 'dead'")
        return {int(idx): self._dialect.key_out(key) for idx, key in rows}

    def rerun_items(self) -> dict[int, str]:
        """Source index -> key of the items chosen for a rerun and not finished again."""
        rows = self._all("SELECT idx, key FROM {items} WHERE {of_run}status = 'rerun'")
        return {int(idx): self._dialect.key_out(key) for idx, key in rows}

    def output_positions(self) -> Iterator[tuple[int, int, str]]:
        """``(position, index, key)`` of every item with an output, by position."""
        query = self._dialect.sql(
            "SELECT ord, idx, key FROM {items} WHERE {of_run}status = 'done' "
            "AND ord IS NOT NULL ORDER BY ord"
        )
        for position, index, key in self._dialect.stream(query, self._values()):
            yield int(position), int(index), self._dialect.key_out(key)

    def unplaced_outputs(self) -> int:
        """How many items have an output whose position is not known."""
        row = self._one(
            "SELECT count(*) FROM {items} WHERE {of_run}status = 'done' AND ord IS NULL"
        )
        return int(row[0])

    def next_output_position(self) -> int | None:
        """The next record's position (one past the last); ``None`` where an output's
        position is not known."""
        row = self._one(
            "SELECT count(*) - count(ord), coalesce(max(ord) + 1, 0) FROM {items} "
            "WHERE {of_run}status = 'done'"
        )
        return None if int(row[0]) else int(row[1])

    _DEAD = (
        "SELECT i.idx, i.key, i.status, d.step, d.error_type, d.message, d.attempts, d.item "
        "FROM {items} i JOIN {dead} d ON {same_run}d.idx = i.idx "
        "WHERE {i_of_run}i.status = 'dead'"
    )

    def _dead_item(self, row: Any) -> FinishedItem:
        index, key, status, step, error_type, message, attempts, item = row
        try:
            return FinishedItem(
                int(index), self._dialect.key_out(key), str(status), str(step), str(error_type),
                str(message), int(attempts), None if item is None else str(item),
            )  # fmt: skip
        except (TypeError, ValueError):
            raise StorageError(
                f"{self._dialect.where} is damaged: the dead letter of source index {index} "
                "is not what a session wrote"
            ) from None

    def dead_letters(
        self, *, session: int | None = None, limit: int | None = None
    ) -> list[FinishedItem]:
        """Every dead item with its error in source order; only one session's if given,
        and the first ``limit`` of them if given."""
        query = self._DEAD + ("" if session is None else " AND i.session = :session")
        query += " ORDER BY i.idx" + ("" if limit is None else f" LIMIT {int(limit)}")
        return [self._dead_item(row) for row in self._all(query, session=session)]

    def iter_dead_letters(self) -> Iterator[FinishedItem]:
        """Every dead item in source order, read a few at a time."""
        rows = self._dialect.stream(
            self._dialect.sql(self._DEAD + " ORDER BY i.idx"), self._values()
        )
        for row in rows:
            yield self._dead_item(row)

    def dead_letter_groups(self, examples: int) -> list[DeadGroup]:
        """The dead letters grouped by step and error type, each with a few examples."""
        groups = self._all(
            "SELECT d.step, d.error_type, count(*) FROM {items} i JOIN {dead} d "
            "ON {same_run}d.idx = i.idx WHERE {i_of_run}i.status = 'dead' "
            "GROUP BY d.step, d.error_type"
        )
        query = self._DEAD + " AND d.step = :step AND d.error_type = :error_type ORDER BY i.idx"
        query += f" LIMIT {int(examples)}"
        return merge_groups(
            (
                DeadGroup(
                    str(step),
                    str(error_type),
                    int(count),
                    [
                        self._dead_item(row)
                        for row in self._all(query, step=step, error_type=error_type)
                    ],
                )
                for step, error_type, count in groups
            ),
            examples,
        )

    def status(self) -> RunStatus:
        """Counts, the last error of each step, timing and the source's size."""
        counts = dict(
            self._all("SELECT status, count(*) FROM {items} WHERE {of_run}TRUE GROUP BY status")
        )
        run = self._one(
            "SELECT definition, watermark, created, updated, total FROM {runs} WHERE {one} = :run"
        )
        sessions = self._one("SELECT count(*) FROM {sessions} WHERE {of_run}TRUE")[0]
        last = self._all(
            "SELECT step, error_type, message, n FROM (SELECT step, error_type, message, "
            "count(*) OVER (PARTITION BY step) AS n, row_number() OVER (PARTITION BY step "
            "ORDER BY finished DESC, idx DESC) AS r FROM {dead} WHERE {of_run}TRUE) AS ranked "
            "WHERE r = 1 ORDER BY step"
        )
        errors = [StepError(str(s), int(n), str(t), str(m)) for s, t, m, n in last]
        definition = {} if run is None else self._json_object(run[0], "run definition")
        return RunStatus.from_rows(counts, run, int(sessions), errors, definition)

    def samples(self) -> list[Sample]:
        """The run's time series, every session's, in order."""
        return decode_samples(
            self._all(
                "SELECT session, seq, t, data FROM {samples} WHERE {of_run}TRUE "
                "ORDER BY session, seq"
            )
        )

    def latest_sample(self) -> Sample | None:
        """The last sample of the run's latest session (``None`` before the first)."""
        found = decode_samples(
            self._all(
                "SELECT session, seq, t, data FROM {samples} WHERE {of_run}TRUE "
                "ORDER BY session DESC, seq DESC LIMIT 1"
            )
        )
        return found[0] if found else None
