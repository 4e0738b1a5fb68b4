"""The keys of a source: which records repeat a key an earlier record has, and the
policy that says what a run does with them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from .records import BadRecord

__all__ = ["Duplicates", "KeyLedger", "scan_repeats"]

Duplicates = Literal["error", "first", "suffix"]
"""What a run does with a record whose key an earlier record has (see ``hr.run``'s
``duplicates``)."""


class KeyLedger:
    """The keys of a source seen so far, to find the ones that repeat.

    Memory grows with the number of distinct keys (about 100 bytes each), the one
    cost of a run that is not bounded; a source whose keys cannot repeat skips it.
    """

    def __init__(self, *, suffix: bool) -> None:
        self.suffix = suffix
        self.seen: set[str] = set()
        self.counts: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """``None`` for a key seen for the first time; else, with ``suffix``, the key
        this repeat is given (``key#2``, ``key#3`` ..., passing over any the source
        holds, and taken from then on), without, the key itself."""
        seen = self.seen
        if key not in seen:
            seen.add(key)
            return None
        if not self.suffix:
            return key
        count = self.counts.get(key, 1)
        candidate = key
        while candidate in seen:  # the source may hold a key that looks like a suffixed one
            count += 1
            candidate = f"{key}#{count}"
        self.counts[key] = count
        seen.add(candidate)
        return candidate


def scan_repeats(records: Iterable[Any], policy: Duplicates) -> dict[int, str]:
    """The positions of ``records`` (a source's ``records()``) whose key repeats an
    earlier one under ``policy``, each with the key ``"suffix"`` gives it: what a
    run's feed decides record by record, decided for the whole source at once (a
    run on a cluster, whose shards each see only their part)."""
    ledger = KeyLedger(suffix=policy == "suffix")
    repeats: dict[int, str] = {}
    for position, record in enumerate(records):
        if not isinstance(record, BadRecord):
            given = ledger.admit(record[0])
            if given is not None:
                repeats[position] = given
    return repeats
