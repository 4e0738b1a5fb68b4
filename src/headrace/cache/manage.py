"""Looking after the project's cache file: what it holds, clearing it, pruning it.

``headrace cache stats|clear|prune`` call these. *Stale* entries are those of a
step's fingerprint that is no longer its newest one (the step's code or options
changed since): a run would never read them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .tiers import connect

__all__ = ["StepEntries", "clear", "prune", "stats"]


@dataclass(frozen=True, slots=True)
class StepEntries:
    """What the cache file holds for one step name."""

    step: str
    entries: int
    bytes: int
    expired: int
    stale: int
    fingerprints: int


_STALE = """
    fingerprint != (SELECT f.fingerprint FROM fingerprints f WHERE f.step = entries.step
                    ORDER BY f.last_used DESC LIMIT 1)
"""


def stats(path: Path, now: float | None = None) -> list[StepEntries]:
    """Entries, bytes, expired and stale entries, per step name."""
    now = time.time() if now is None else now
    db = connect(path)
    try:
        rows = db.execute(
            f"""SELECT step, COUNT(*), COALESCE(SUM(LENGTH(value)), 0),
                       SUM(expires IS NOT NULL AND expires <= ?),
                       SUM({_STALE}), COUNT(DISTINCT fingerprint)
                FROM entries GROUP BY step ORDER BY step""",
            (now,),
        ).fetchall()
    finally:
        db.close()
    return [StepEntries(r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5]) for r in rows]


def clear(path: Path, step: str | None = None) -> int:
    """Remove every entry (or those of one step name); return how many went."""
    db = connect(path)
    try:
        if step is None:
            removed = db.execute("DELETE FROM entries").rowcount
            db.execute("DELETE FROM fingerprints")
        else:
            removed = db.execute("DELETE FROM entries WHERE step = ?", (step,)).rowcount
            db.execute("DELETE FROM fingerprints WHERE step = ?", (step,))
        db.execute("VACUUM")
    finally:
        db.close()
    return removed


def prune(path: Path, now: float | None = None) -> tuple[int, int]:
    """Remove expired and stale entries; return how many of each went."""
    now = time.time() if now is None else now
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        expired = db.execute(
            "DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (now,)
        ).rowcount
        stale = db.execute(f"DELETE FROM entries WHERE {_STALE}").rowcount
        db.execute(
            """DELETE FROM fingerprints WHERE fingerprint NOT IN
               (SELECT DISTINCT fingerprint FROM entries)"""
        )
        db.execute("COMMIT")
        db.execute("VACUUM")
    finally:
        db.close()
    return expired, stale
