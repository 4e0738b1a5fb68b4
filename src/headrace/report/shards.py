"""The report of a run on a cluster: its shards' series joined into one.

Each shard of a run on Ray is a run of its own, with its own store and time series
(``run_dir/shards/...``); the parent run's store holds only the plan. The report
reads every shard's rows and builds the whole run's: at each moment a shard
recorded, every shard (each session of it) counts as its latest row then. Counters
and histograms add up (a shard that ended keeps its final counts, one not started
yet counts nothing), so the joined counters grow as the run's did; what is a state
rather than a count (items and calls in flight, slots) adds up over the shards
running at that moment only; a rate limit in force is the highest any shard had
in its latest row (a limit shared through Redis is one limit, not one per shard). Each
step's ``slot_s`` adds up its slots times each shard's wall time: the slot-seconds the
run had, which a step's busy share is taken of (its slots at the end, times the run's
wall time, would count a shard that ended early as if it ran to the end). Rows are
untrusted data: a value of the wrong type counts as absent.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..cluster.shard_status import joined_status, shard_states
from ..cluster.shards import ShardPlan, shard_location
from ..metrics import Histogram
from ..metrics.timeline import MAX_ROWS
from ..store import StoreLocation
from ..store.run_store import DeadGroup, RunStatus, Sample, merge_groups

__all__ = ["ShardedParts", "join_shard_samples", "read_shards"]

_RUNNING_ONLY = frozenset({"in_flight", "slots", "in_use", "waiting", "limit"})
"""States: added up over the shards running at the moment."""
_HIGHEST = frozenset({"max", "peak", "requests_per_minute", "tokens_per_minute"})
"""Taken as the highest any shard had."""
_DERIVED = frozenset({"wall_s", "t", "items_per_s", "latency_ms", "total"})
"""Worked out again for the whole run."""


@dataclass(frozen=True, slots=True)
class ShardedParts:
    """What a report of a run on a cluster takes from its shards' stores."""

    status: RunStatus
    samples: list[Sample]
    dead: list[DeadGroup]
    running: bool


def read_shards(parent: StoreLocation, status: RunStatus, examples: int) -> ShardedParts:
    """Read every shard of the run at ``parent`` (whose status is ``status``), its dead
    letters grouped with ``examples`` of each group.

    Raises:
        HeadraceError: the stored shard plan is damaged.
    """
    plan = ShardPlan.from_json(status.definition.get("shards"), str(parent))
    states = shard_states(parent, plan)
    series: list[list[Sample]] = []
    groups: list[DeadGroup] = []
    for state in states:
        if state.status is None:
            continue  # not started yet
        store = shard_location(parent, state.index).open()
        try:
            series.append(store.samples())
            groups += store.dead_letter_groups(examples)
        finally:
            store.close()
    return ShardedParts(
        status=joined_status(status, plan, states),
        samples=join_shard_samples(series, total=plan.total),
        dead=merge_groups(groups, examples),
        running=any(s.lease is not None and s.lease.alive() for s in states),
    )


@dataclass(frozen=True, slots=True)
class _Piece:
    """One session of one shard: its rows in time order."""

    times: list[float]
    rows: list[dict[str, Any]]

    def at(self, moment: float) -> tuple[dict[str, Any], bool] | None:
        """The row in force at ``moment`` and whether the session was still running."""
        index = bisect.bisect_right(self.times, moment) - 1
        if index < 0:
            return None
        return self.rows[index], moment <= self.times[-1]


def _pieces(shards: Iterable[list[Sample]]) -> list[_Piece]:
    pieces = []
    for samples in shards:
        sessions: dict[int, list[Sample]] = {}
        for sample in sorted(samples, key=lambda s: (s.session, s.seq)):
            if isinstance(sample.data, Mapping):
                sessions.setdefault(sample.session, []).append(sample)
        for rows in sessions.values():
            rows.sort(key=lambda s: s.t)
            pieces.append(_Piece([s.t for s in rows], [dict(s.data) for s in rows]))
    return pieces


def _moments(pieces: list[_Piece]) -> list[float]:
    """The moments a joined row is made at: every row's, thinned evenly to at most
    ``MAX_ROWS`` (the last always kept)."""
    every = sorted({t for piece in pieces for t in piece.times})
    if len(every) <= MAX_ROWS:
        return every
    step = len(every) / MAX_ROWS
    kept = [every[int(i * step)] for i in range(MAX_ROWS - 1)]
    return [*kept, every[-1]]


def join_shard_samples(shards: Iterable[list[Sample]], *, total: int | None) -> list[Sample]:
    """The whole run's time series from its shards' (each a list of a shard's rows),
    as the rows of one session (see the module's notes)."""
    pieces = _pieces(shards)
    if not pieces:
        return []
    began = min(piece.times[0] - _number(piece.rows[0].get("wall_s")) for piece in pieces)
    joined = []
    # a piece that has ended counts its last row from then on: those are folded into
    # one row as they end, so each moment joins the running pieces and that row only
    by_end = sorted(pieces, key=lambda piece: piece.times[-1])
    ended: list[dict[str, Any]] = []
    for seq, moment in enumerate(_moments(pieces)):
        while by_end and by_end[0].times[-1] < moment:
            last = by_end.pop(0).rows[-1]
            ended = [_join([*ended, last], [False] * (len(ended) + 1))]
        found = [now for piece in by_end if (now := piece.at(moment)) is not None]
        found += [(row, False) for row in ended]
        data = _join([row for row, _ in found], [running for _, running in found])
        data["wall_s"] = moment - began
        data["t"] = moment
        data["total"] = total
        joined.append(Sample(session=1, seq=seq, t=moment, data=data))
    return joined


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(value) if _is_number(value) else 0.0


def _join(rows: list[dict[str, Any]], running: list[bool]) -> dict[str, Any]:
    """One row from the shards' rows at one moment (``running``: each shard's state)."""
    joined = _join_values(rows, running)
    steps: dict[str, list[tuple[dict[str, Any], bool]]] = {}
    for row, alive in zip(rows, running, strict=True):
        wall = _number(row.get("wall_s"))
        for step in row.get("steps") or ():
            if isinstance(step, Mapping) and isinstance(step.get("name"), str):
                found = dict(step)
                if "slot_s" not in found:  # a shard's own row: its slots over its wall time
                    found["slot_s"] = _number(found.get("slots")) * wall
                steps.setdefault(step["name"], []).append((found, alive))
    joined["steps"] = [
        _join_step([s for s, _ in found], [a for _, a in found]) for found in steps.values()
    ]
    return joined


def _join_step(steps: list[dict[str, Any]], running: list[bool]) -> dict[str, Any]:
    joined = _join_values(steps, running)
    histogram = Histogram()
    for step in steps:
        histogram.merge(Histogram.from_sparse(step.get("latency_hist")))
    joined["latency_hist"] = histogram.sparse()
    joined["latency_ms"] = histogram.milliseconds()
    return joined


def _join_values(values: list[dict[str, Any]], running: list[bool]) -> dict[str, Any]:
    """Every key of ``values`` joined: mappings key by key, else numbers added (or the
    highest, or added over the running shards only; a value of another type is left
    out), else the first that is not ``None``."""
    joined: dict[str, Any] = {}
    keys = dict.fromkeys(key for value in values for key in value)
    for key in keys:
        if key in _DERIVED or key in ("steps", "latency_hist"):
            continue
        present = [(v[key], alive) for v, alive in zip(values, running, strict=True) if key in v]
        maps = [(dict(v), alive) for v, alive in present if isinstance(v, Mapping)]
        numbers = [(_number(v), alive) for v, alive in present if _is_number(v)]
        if maps:
            joined[key] = _join_values([m for m, _ in maps], [a for _, a in maps])
        elif numbers:
            if key in _HIGHEST:
                joined[key] = max(n for n, _ in numbers)
            elif key in _RUNNING_ONLY:
                joined[key] = sum(n for n, alive in numbers if alive)
            else:
                joined[key] = sum(n for n, _ in numbers)
        else:
            joined[key] = next((v for v, _ in present if v is not None), None)
    return joined
