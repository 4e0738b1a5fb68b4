"""A worker of a run on a cluster: runs one shard at a time through the local runner.

A worker is a Ray actor that keeps the pipeline between shards (a model loads once
per worker). Each shard is a durable run of its own (see :mod:`headrace.cluster.shards`):
the worker takes the shard's lease, runs what the shard has not finished, commits
outcomes and its part of the sink, and sends back counters and dead letters.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..engine.result import DeadLetter
from ..engine.run_options import RunOptions
from ..engine.runner import run_with
from ..errors import HeadraceError, RunBusy
from ..io.keys import Duplicates, scan_repeats
from ..io.records import Source
from ..metrics import RunMetrics
from ..metrics.otel import SHARD
from ..pipeline.step import Step

__all__ = ["ShardOutcome", "ShardTask", "ShardWorker", "run_shard"]


@dataclass(frozen=True, slots=True)
class ShardTask:
    """What a worker needs to run one shard: its range of the source, its part of the
    sink, and the options of its child run (its directory and store, its mode, and
    the run's settings that a shard keeps), built once by the driver."""

    index: int
    start: int
    source: Source
    sink: Any
    options: RunOptions


@dataclass(slots=True)
class ShardOutcome:
    """How a shard ended on a worker: ``finished`` (with its counters and this session's
    dead letters, indexed as in the whole source), ``busy`` (a live session of another
    worker holds the shard) or ``failed`` (with the error)."""

    index: int
    state: Literal["finished", "busy", "failed"]
    metrics: RunMetrics | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    error: BaseException | None = None


def run_shard(root: Step[Any, Any], task: ShardTask) -> ShardOutcome:
    """Run one shard to its end in this process (a fresh event loop)."""
    shard = SHARD.set(task.index)
    try:
        result = asyncio.run(run_with(root, task.source, sink=task.sink, options=task.options))
    except RunBusy as exc:
        return ShardOutcome(task.index, "busy", error=exc)
    except Exception as exc:
        return ShardOutcome(task.index, "failed", error=_portable(exc))
    finally:
        SHARD.reset(shard)
    dead = [
        dataclasses.replace(letter, index=letter.index + task.start, error=None)
        for letter in result.dead_letters
    ]
    return ShardOutcome(task.index, "finished", result.metrics.detached(), dead)


def _portable(error: Exception) -> BaseException:
    """The error itself when it can travel back to the driver, else its words."""
    from ray import cloudpickle as pickler

    cloudpickle: Any = pickler

    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return HeadraceError(f"{type(error).__name__}: {error}")
    return error


class ShardWorker:
    """The Ray actor: holds the pipeline (unpickled once) and runs shards one by one."""

    def __init__(self, pipeline: bytes) -> None:
        from ray import cloudpickle as pickler

        cloudpickle: Any = pickler
        self.root: Step[Any, Any] = cloudpickle.loads(pipeline)

    def run(self, task: ShardTask) -> ShardOutcome:
        """Run one shard (see :func:`run_shard`)."""
        return run_shard(self.root, task)

    def scan(self, source: Source, policy: Duplicates) -> dict[int, str]:
        """The positions of the whole source whose key repeats an earlier one (see
        :func:`~headrace.io.keys.scan_repeats`)."""
        return scan_repeats(source.records(), policy)
