"""The run store: the durable record of a run (definition, finished items, sink state)."""

from .sqlite import FinishedItem, RunStatus, SqliteRunStore, StepError

__all__ = ["FinishedItem", "RunStatus", "SqliteRunStore", "StepError"]
