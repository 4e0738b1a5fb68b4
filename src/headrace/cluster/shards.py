"""How a run splits into shards, and where each shard's own durable run lives.

A run on a cluster is a *parent* run in ``run_dir`` (its definition, the plan, one
driver at a time) and one *child* run per shard in ``run_dir/shards/<name>.<i>/``:
a durable run of the local runner over the shard's range of the source, writing
its own part of the sink. A child run's lease (one session at a time, with a
heartbeat; see :mod:`headrace.store.lease`) is the shard's lease: a worker that
dies leaves it to be taken over, and what the worker committed stays committed.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from ..errors import HeadraceError
from ..store import StoreLocation

__all__ = ["ShardPlan", "shard_location"]


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
