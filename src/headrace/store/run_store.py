"""What every run store keeps and answers, whatever the database behind it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .lease import Lease

__all__ = [
    "DeadGroup",
    "DeadRow",
    "FinishedItem",
    "RERUN",
    "Row",
    "RunStatus",
    "RunStore",
    "Sample",
    "StepError",
    "decode_samples",
    "merge_groups",
]

Row = tuple[int, str, str, int | None]
"""A finished item as the writer commits it: source index, key, status, and (for an
output) its position among the sink's records, counted from 0 (``None``: no output, or a
run whose positions are not known)."""

RERUN = "rerun"
"""The status of an item chosen for a rerun: its old output is gone from the sink, and
the next session of the run computes it again."""

DeadRow = tuple[int, str, str, str, int, str | None]
"""A dead letter's details: source index, step, error type, message, attempts, item (JSON)."""


@dataclass(frozen=True, slots=True)
class FinishedItem:
    """One finished item as read back from the store (dead letters carry their error).

    ``item`` (the input as JSON; a record the source could not read is kept as a
    JSON string of its raw text) is kept for dead letters only, so that the
    dead-letter file can show what failed.
    """

    index: int
    key: str
    status: str
    step: str | None = None
    error_type: str | None = None
    message: str | None = None
    attempts: int | None = None
    item: str | None = None

    def decoded_item(self) -> Any:
        """The stored input item (JSON), decoded."""
        if self.item is None:
            return None
        try:
            return json.loads(self.item)
        except ValueError:  # damaged in the store: the text is what there is to show
            return self.item


@dataclass(frozen=True, slots=True)
class DeadGroup:
    """The dead letters of one step with one error type: how many, and a few of them."""

    step: str
    error_type: str
    count: int
    examples: list[FinishedItem]


def merge_groups(groups: Iterable[DeadGroup], examples: int) -> list[DeadGroup]:
    """Groups of several stores (a run's shards) as one list: counts added, the first
    examples kept, most first."""
    merged: dict[tuple[str, str], DeadGroup] = {}
    for group in groups:
        key = (group.step, group.error_type)
        before = merged.get(key)
        if before is None:
            merged[key] = DeadGroup(group.step, group.error_type, group.count, group.examples)
        else:
            merged[key] = DeadGroup(
                group.step,
                group.error_type,
                before.count + group.count,
                (before.examples + group.examples)[:examples],
            )
    return sorted(merged.values(), key=lambda g: (-g.count, g.step, g.error_type))


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of a run's time series: its metrics (``RunMetrics.to_dict()``'s data,
    with histograms) as they stood at ``t`` (seconds since the epoch) in ``session``;
    counters count from the start of that session."""

    session: int
    seq: int
    t: float
    data: dict[str, Any]


def decode_samples(rows: list[Any]) -> list[Sample]:
    """Samples from ``(session, seq, t, data)`` rows; a row that is not what the run
    wrote (damaged JSON, not an object) is left out: a report shows what it can."""
    found = []
    for session, seq, t, text in rows:
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(Sample(int(session), int(seq), float(t), data))
    return found


@dataclass(frozen=True, slots=True)
class StepError:
    """The most recent failure of one step."""

    step: str
    count: int
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class RunStatus:
    """What ``headrace status`` shows: counts, the last error per step, timing."""

    done: int
    dead: int
    filtered: int
    watermark: int
    sessions: int
    created: float
    updated: float
    last_errors: list[StepError]
    definition: dict[str, Any]
    total: int | None = None
    duplicate: int = 0
    rerun: int = 0
    """Items a rerun chose and did not finish again (counted as pending)."""

    @property
    def finished(self) -> int:
        """Records finished in any way (dropped repeated keys too)."""
        return self.done + self.dead + self.filtered + self.duplicate

    @classmethod
    def from_rows(
        cls,
        counts: dict[str, int],
        run: Any,
        sessions: int,
        errors: list[StepError],
        definition: dict[str, Any],
    ) -> RunStatus:
        """Build it from what both stores query: outcome counts, the run's row
        ``(definition, watermark, created, updated, total)`` or ``None``, the number
        of sessions, the last error of each step and the definition (checked)."""
        return cls(
            done=int(counts.get("done", 0)),
            dead=int(counts.get("dead", 0)),
            filtered=int(counts.get("filtered", 0)),
            duplicate=int(counts.get("duplicate", 0)),
            rerun=int(counts.get(RERUN, 0)),
            watermark=int(run[1]) if run else 0,
            sessions=sessions,
            created=float(run[2]) if run else 0.0,
            updated=float(run[3]) if run else 0.0,
            last_errors=errors,
            definition=definition,
            total=None if run is None or run[4] is None else int(run[4]),
        )

    @property
    def pending(self) -> int | None:
        """Items not finished yet (in flight or not read), if the source's size is known."""
        return None if self.total is None else max(self.total - self.finished, 0)


class RunStore(Protocol):
    """The durable record of one run; :class:`~headrace.store.sqlite.SqliteRunStore` and
    :class:`~headrace.store.postgres.PostgresRunStore` keep the same one."""

    def definition(self) -> dict[str, Any] | None:
        """The stored run definition, or ``None`` for a new store."""

    def fingerprint(self) -> str | None:
        """The pipeline fingerprint the run was started (or last forced) with."""

    def create(self, definition: dict[str, Any], fingerprint: str) -> None:
        """Record a new run's definition; the sink's state starts as ``{"token": ...}``."""

    def start_session(self, *, forced: bool = False, note: str | None = None) -> int:
        """Record that a run or resume starts; return its session number (1, 2, ...)."""

    def force_fingerprint(self, fingerprint: str, pipeline: str | None = None) -> None:
        """Adopt a changed pipeline fingerprint (a forced resume, a rerun), and the
        pipeline reference a rerun changed (its recipe's settings), if given."""

    def forced_sessions(self) -> list[tuple[int, str | None]]:
        """The sessions that forced a resume, with their notes."""

    def lease(self) -> Lease | None:
        """The run's lease as stored (its holder may be dead)."""

    def acquire_lease(self) -> Lease | None:
        """Take the run for this session (``RunBusy`` if a live one holds it); return
        the dead holder's lease when it was taken over."""

    def heartbeat(self) -> None:
        """Renew this session's lease (``LeaseLost`` if it was taken over)."""

    def release_lease(self) -> None:
        """Give the lease back."""

    def watermark(self) -> int:
        """Every source index below this is finished."""

    def key_digest(self) -> str:
        """The digest of the keys below the watermark, in source order (see ``chain_key``)."""

    def finished_above(self, watermark: int) -> dict[int, str]:
        """Source index -> key of the items finished at or above ``watermark``."""

    def sink_state(self) -> dict[str, Any]:
        """The sink's committed state."""

    def set_total(self, total: int) -> None:
        """Record how many records the source holds."""

    def finished_sessions(self) -> dict[str, int]:
        """Key -> the session that committed it, for every finished item."""

    def dead_items(self) -> dict[int, str]:
        """Source index -> key of every dead item."""

    def dead_letters(
        self, *, session: int | None = None, limit: int | None = None
    ) -> list[FinishedItem]:
        """Every dead item with its error in source order; only one session's if given,
        and the first ``limit`` of them if given."""

    def iter_dead_letters(self) -> Iterator[FinishedItem]:
        """Every dead item in source order, read a few at a time (memory stays flat)."""

    def dead_letter_groups(self, examples: int) -> list[DeadGroup]:
        """The dead letters grouped by step and error type, most first, each with its
        count and its first ``examples`` items: what a report shows, without reading
        every dead letter."""

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
        """Record a batch of finished items, the new watermark and sink state, atomically."""

    def forget_outputs(self) -> int:
        """Forget every ``done`` outcome so a resume computes those items again."""

    def output_positions(self) -> Iterator[tuple[int, int, str]]:
        """``(position, index, key)`` of every item with an output, by position (the
        order of the sink's records), read a few at a time."""

    def unplaced_outputs(self) -> int:
        """How many items have an output whose position is not known (finished by a
        headrace from before positions were kept)."""

    def next_output_position(self) -> int | None:
        """The position of the sink's next record; ``None`` where some output's
        position is not known (the run then keeps none)."""

    def mark_rerun(self, indexes: list[int], sink_state: dict[str, Any]) -> None:
        """In one transaction: the items at ``indexes`` become :data:`RERUN` (their
        outputs left the sink), the remaining outputs' positions close up, and the
        sink's state becomes ``sink_state``."""

    def rerun_items(self) -> dict[int, str]:
        """Source index -> key of the items chosen for a rerun and not finished again."""

    def discard(self) -> None:
        """Forget this run entirely (a new run refused before anything ran)."""

    def status(self) -> RunStatus:
        """Counts, the last error of each step, timing and the source's size."""

    def record_sample(self, session: int, seq: int, t: float, data: dict[str, Any]) -> None:
        """Write (or overwrite) one sample of the run's time series."""

    def thin_samples(self, session: int) -> None:
        """Drop every other sample of ``session``, keeping its first and its last."""

    def samples(self) -> list[Sample]:
        """The run's time series, every session's, in order."""

    def latest_sample(self) -> Sample | None:
        """The last sample of the run's latest session (``None`` before the first)."""

    def sessions(self) -> list[tuple[int, float, bool, str | None]]:
        """Every session: its number, when it started, whether it was forced, its note."""

    def close(self) -> None:
        """Release the connection."""
