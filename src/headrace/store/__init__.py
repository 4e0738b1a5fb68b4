"""The run store: the durable record of a run (definition, finished items, sink state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..services.secrecy import scrub_url
from .run_store import DeadRow, FinishedItem, Row, RunStatus, RunStore, StepError
from .sqlite import SqliteRunStore


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where a run's store is: ``run.sqlite`` in its run directory, or, given a
    PostgreSQL ``url``, the run named after that directory in that database."""

    run_dir: Path
    url: str | None = None

    @property
    def name(self) -> str:
        """The run's name in a shared database: its run directory's name."""
        return self.run_dir.resolve().name

    def exists(self) -> bool:
        """Whether a run is stored there."""
        if self.url is None:
            return SqliteRunStore.exists_in(self.run_dir)
        from .postgres import PostgresRunStore

        return PostgresRunStore.exists(self.url, self.name)

    def open(self) -> RunStore:
        """Open (creating if needed) the store."""
        if self.url is None:
            return SqliteRunStore.in_dir(self.run_dir)
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"run_store must be a postgresql:// URL, got {scrub_url(self.url)!r}")
        from .postgres import PostgresRunStore

        return PostgresRunStore(self.url, self.name)

    def __str__(self) -> str:
        if self.url is None:
            return str(self.run_dir)
        return f"run {self.name!r} in {scrub_url(self.url)}"


__all__ = [
    "DeadRow",
    "FinishedItem",
    "Row",
    "RunStatus",
    "RunStore",
    "SqliteRunStore",
    "StepError",
    "StoreLocation",
]
