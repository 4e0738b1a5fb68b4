"""What a report is made of: a run's store read at one moment (its shards' too, for a
run on a cluster)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..store import StoreLocation
from ..store.run_store import DeadGroup, RunStatus, Sample
from .shards import read_shards

__all__ = ["EXAMPLES", "RunRecord"]

EXAMPLES = 3
"""Dead letters shown for each step and cause."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a report is made of, read from a run's store at one moment."""

    where: str
    run_dir: str
    definition: dict[str, Any]
    status: RunStatus
    sessions: list[tuple[int, float, bool, str | None]]
    samples: list[Sample]
    dead: list[DeadGroup]  # grouped, with a few examples each: never every dead letter
    running: bool

    @classmethod
    def load(cls, location: StoreLocation) -> RunRecord:
        """Read the run at ``location`` (which must exist)."""
        store = location.open()
        try:
            lease = store.lease()
            record = cls(
                where=str(location),
                run_dir=str(location.run_dir),
                definition=store.definition() or {},
                status=store.status(),
                sessions=store.sessions(),
                samples=store.samples(),
                dead=store.dead_letter_groups(EXAMPLES),
                running=lease is not None and lease.alive(),
            )
        finally:
            store.close()
        if "shards" not in record.definition:
            return record
        shards = read_shards(location, record.status, EXAMPLES)  # a run on a cluster
        return dataclasses.replace(
            record,
            status=shards.status,
            samples=shards.samples,
            dead=shards.dead,
            running=record.running or shards.running,
        )
