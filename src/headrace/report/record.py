"""What a report is made of: a run's store read at one moment (its shards' too, for a
run on a cluster)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import StoreLocation
from ..store.run_store import DeadGroup, RunStatus, Sample
from .shards import read_shards

__all__ = ["EXAMPLES", "RunRecord", "read_estimate"]

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
    estimate: dict[str, dict[str, tuple[float, float, float] | None]] | None = None
    """What ``headrace estimate`` projected before the run, per tier (``cost_usd`` and
    ``wall_s`` as p10, p50, p90), when it was kept in the run's folder and reads whole."""

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
                estimate=read_estimate(location.run_dir),
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


def read_estimate(
    run_dir: Path | str | None,
) -> dict[str, dict[str, tuple[float, float, float] | None]] | None:
    """The estimate kept in ``run_dir`` (``estimate.json``), each tier's ``cost_usd`` and
    ``wall_s`` as (p10, p50, p90); ``None`` when there is none, it is not a plain file,
    or any part of it is not what an estimate holds (the file is read as untrusted)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "estimate.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1_000_000:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        tiers = data["tiers"]
        found = {}
        for name in ("online", "flex", "batch"):
            if name in tiers:
                tier = tiers[name]
                found[name] = {what: _quantiles(tier[what]) for what in ("cost_usd", "wall_s")}
        return found or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _quantiles(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    low, mid, high = (float(value[q]) for q in ("p10", "p50", "p90"))
    if not all(math.isfinite(v) and v >= 0 for v in (low, mid, high)) or not low <= mid <= high:
        raise ValueError("not quantiles")
    return low, mid, high
