"""What a cached step counted in one run: hits by tier, misses, joins, bytes stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CacheStats"]


@dataclass(slots=True, eq=False)
class CacheStats:
    """One cached step's counts in one run (``metrics.step(name).cache``).

    Attributes:
        hits: lookups answered, by tier.
        misses: lookups no tier answered (the step was called).
        joins: items that waited for an identical call already in flight.
        backfills: entries copied into a faster tier after a hit in a slower one.
        stored: results written (once per result, whatever the number of tiers).
        bytes: the size of the results written.
        unreadable: entries found but not readable here (damaged, or naming a class
            the step did not declare); counted as misses, with one warning a run.
        tiers_down: outages of a tier that stopped answering (Redis).
        timestamp_field: a field of the key's material that looks like a moment in time
            (see :func:`~headrace.cache.keys.timestamp_field`), seen on the first misses.
    """

    hits: dict[str, int] = field(default_factory=dict)
    misses: int = 0
    joins: int = 0
    backfills: int = 0
    stored: int = 0
    bytes: int = 0
    unreadable: int = 0
    tiers_down: int = 0
    timestamp_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The counts as plain data."""
        return {
            "hits": dict(self.hits),
            "misses": self.misses,
            "joins": self.joins,
            "backfills": self.backfills,
            "stored": self.stored,
            "bytes": self.bytes,
            "unreadable": self.unreadable,
            "tiers_down": self.tiers_down,
            "timestamp_field": self.timestamp_field,
        }

    def summary(self) -> str:
        """One line for the run summary."""
        hits = ", ".join(f"{tier} {n:,}" for tier, n in self.hits.items()) or "none"
        line = (
            f"cache: hits {hits}; misses {self.misses:,}; joined {self.joins:,}; "
            f"back-filled {self.backfills:,}; stored {self.stored:,} ({self.bytes:,} bytes)"
        )
        if self.tiers_down:
            line += f"; a tier was down {self.tiers_down} time(s)"
        return line
