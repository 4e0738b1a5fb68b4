"""How a run splits into shards, where each shard's own durable run lives, and the
parent run's view of the sink.

A run on a cluster is a *parent* run in ``run_dir`` (its definition, the plan, one
driver at a time) and one *child* run per shard in ``run_dir/shards/<name>.<i>/``:
a durable run of the local runner over the shard's range of the source, writing
its own part of the sink. A child run's lease (one session at a time, with a
heartbeat; see :mod:`headrace.store.lease`) is the shard's lease: a worker that
dies leaves it to be taken over, and what the worker committed stays committed.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import HeadraceError
from ..io.records import Recovered
from ..store import StoreLocation
from ..store.base import RunStatus, StepError
from ..store.lease import Lease

__all__ = [
    "ShardPlan",
    "ShardState",
    "ShardedSink",
    "joined_status",
    "shard_location",
    "shard_states",
    "sharded",
]


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The shards of a run: ``bounds[i]`` is shard ``i``'s ``(start, stop)`` positions."""

    bounds: tuple[tuple[int, int], ...]

    @classmethod
    def split(cls, total: int, shard_size: int) -> ShardPlan:
        """Consecutive ranges of ``shard_size`` positions covering ``0 .. total-1``."""
        count = max(1, math.ceil(total / shard_size))
        return cls(tuple((i * shard_size, min((i + 1) * shard_size, total)) for i in range(count)))

    @property
    def total(self) -> int:
        """The number of source positions the plan covers."""
        return self.bounds[-1][1] if self.bounds else 0

    def split_repeats(self, repeats: dict[int, str]) -> list[dict[int, str]]:
        """The repeated positions of the whole source (see
        :func:`~headrace.io.keys.scan_repeats`), per shard, counted from its start."""
        shards: list[dict[int, str]] = [{} for _ in self.bounds]
        starts = [start for start, _ in self.bounds]
        for position, key in repeats.items():
            index = bisect.bisect_right(starts, position) - 1
            shards[index][position - starts[index]] = key
        return shards

    def to_json(self) -> list[list[int]]:
        """The plan as stored in the parent run's definition."""
        return [[start, stop] for start, stop in self.bounds]

    @classmethod
    def from_json(cls, stored: Any, where: str) -> ShardPlan:
        """The plan read back from a run store (untrusted: checked whole).

        Raises:
            HeadraceError: the stored plan is not consecutive ranges from 0.
        """
        bounds: list[tuple[int, int]] = []
        try:
            for start, stop in stored:
                if not (isinstance(start, int) and isinstance(stop, int)):
                    raise TypeError
                bounds.append((start, stop))
        except (TypeError, ValueError):
            raise HeadraceError(f"{where}: the stored shard plan is not a list of ranges") from None
        expected = 0
        for start, stop in bounds:
            if start != expected or stop < start:
                raise HeadraceError(f"{where}: the stored shard plan has a gap or overlap")
            expected = stop
        if not bounds:
            raise HeadraceError(f"{where}: the stored shard plan is empty")
        return cls(tuple(bounds))


def shard_location(parent: StoreLocation, index: int) -> StoreLocation:
    """Where shard ``index``'s child run is stored: ``shards/<name>.<index>/`` under the
    parent's run directory (its name in a PostgreSQL store is ``<name>.<index>``)."""
    name = f"{parent.name}.{index:05d}"
    return StoreLocation(parent.run_dir / "shards" / name, parent.url)


@dataclass(frozen=True, slots=True)
class ShardState:
    """One shard as its child run's store has it (``headrace status`` shows these)."""

    index: int
    start: int
    stop: int
    status: RunStatus | None
    lease: Lease | None

    @property
    def complete(self) -> bool:
        """Whether every item of the shard is finished (done, dead or filtered)."""
        status = self.status
        return status is not None and status.total is not None and status.pending == 0

    @property
    def finished(self) -> int:
        """Items of the shard finished so far."""
        return 0 if self.status is None else self.status.finished

    @property
    def dead(self) -> int:
        """Items of the shard that are dead letters."""
        return 0 if self.status is None else self.status.dead


def shard_states(parent: StoreLocation, plan: ShardPlan) -> list[ShardState]:
    """Every shard's state, read from the child runs' stores."""
    states = []
    for index, (start, stop) in enumerate(plan.bounds):
        location = shard_location(parent, index)
        status = lease = None
        if location.exists():
            store = location.open()
            try:
                status, lease = store.status(), store.lease()
            finally:
                store.close()
        states.append(ShardState(index, start, stop, status, lease))
    return states


def joined_status(parent: RunStatus, plan: ShardPlan, shards: list[ShardState]) -> RunStatus:
    """The run's status with the counts of its shards added up (their runs hold the
    items; the parent's store holds the plan)."""
    seen = [s.status for s in shards if s.status is not None]
    errors: dict[str, StepError] = {}
    for shard in seen:
        for error in shard.last_errors:
            before = errors.get(error.step)
            count = error.count + (before.count if before else 0)
            errors[error.step] = dataclasses.replace(error, count=count)
    return dataclasses.replace(
        parent,
        done=sum(s.done for s in seen),
        dead=sum(s.dead for s in seen),
        filtered=sum(s.filtered for s in seen),
        duplicate=sum(s.duplicate for s in seen),
        total=plan.total,
        updated=max([parent.updated, *(s.updated for s in seen)]),
        last_errors=list(errors.values()),
    )


def sharded(sink: Any) -> bool:
    """Whether ``sink`` can be split across workers (files, part directories, tables)."""
    return all(
        callable(getattr(sink, name, None)) for name in ("for_shard", "join_shards", "clear_shards")
    )


class ShardedSink:
    """The parent run's view of a sink whose shards write it: checked and cleared when
    the run starts, joined when every shard finished, never written here."""

    keeps_journal = False
    flush_items = 1
    flush_interval_s = 1.0

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def describe(self) -> dict[str, Any]:
        """The real sink's description (a resume must name the same one)."""
        described: dict[str, Any] = self.sink.describe()
        return described

    def lock_path(self) -> Any:
        """The real sink's lock file, if it has one: the driver holds it for the run."""
        locate = getattr(self.sink, "lock_path", None)
        return locate() if callable(locate) else None

    def encode(self, key: str, value: Any) -> Any:
        """Never called: the shards encode their outputs."""
        raise HeadraceError("the parent of a sharded run writes nothing itself")

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """A new run: refuse output already there (unless ``overwrite``) and remove what
        an earlier run's shards left; a resumed one (``sharded`` committed): nothing,
        but a finished one whose shard files are gone (``joined``) checks its file.

        Raises:
            SinkDamaged: the joined file is missing or changed.
        """
        if not state.get("sharded"):
            self.sink.open({}, overwrite=overwrite)
            self.sink.close()
            self.sink.clear_shards()
        elif state.get("joined"):
            self.sink.check_joined(state)
        return None

    def set_aside(self) -> str | None:
        """Nothing here: each shard sets its own part aside."""
        return None

    def write(self, records: list[Any], journal: bytes | None = None) -> dict[str, Any]:
        """The parent's only state: that the run was split (its shards own the rest)."""
        return {"sharded": True}

    def close(self) -> None:
        """Nothing stays open."""
        return None
