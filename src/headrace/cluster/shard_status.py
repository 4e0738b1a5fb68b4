"""How far each shard of a run on a cluster has got, read from its own store, and the
parent run's status with its shards' counts joined in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..store import StoreLocation
from ..store.lease import Lease
from ..store.run_store import RunStatus, StepError
from .shards import ShardPlan, shard_location

__all__ = ["ShardState", "joined_status", "shard_states"]


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
