"""A range of a source's records: the unit of work of a run split across workers.

A run on a cluster splits its source by position: shard ``i`` holds the records at
positions ``start .. stop-1``, in order, with the keys the whole source gives them,
so the shards together are the source and an item has one key wherever it runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from .records import BadRecord, KeyedSource, Source, keyed

__all__ = ["SourceRange"]


class SourceRange(Source):
    """The records of ``source`` at positions ``start`` (included) to ``stop`` (excluded).

    A list (or other sequence) is sliced. A source that can reach a position
    without reading what lies before it reads the range itself: a JSON Lines file
    (:meth:`~headrace.io.jsonl.JsonlSource.records_between`) counts newlines to
    its first line, and its positions are lines, as its ``count`` counts them. Any
    other source is read from its start and the records before ``start`` are
    passed over.

    ``repeats``, when given, names the positions of the range (counted from its
    start) whose key an earlier record of the *whole* source has, with the key
    ``duplicates="suffix"`` gives each (see :func:`~headrace.io.keys.scan_repeats`):
    a run over the range applies its duplicate-key policy to those, and only
    those, as a run over the whole source would.
    """

    def __init__(
        self, source: Source, start: int, stop: int, repeats: dict[int, str] | None = None
    ) -> None:
        if not 0 <= start <= stop:
            raise ValueError(f"a source range needs 0 <= start <= stop, got {start}, {stop}")
        self.source = source
        self.start = start
        self.stop = stop
        self.repeats = repeats
        self._items: Sequence[Any] | None = None
        if isinstance(source, KeyedSource) and isinstance(source.items, Sequence):
            # keep only this range's items, so that a shard sent to a worker is small
            self._items = source.items[start:stop]
            self.source = KeyedSource((), source.key)

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        if self._items is not None:
            key = getattr(self.source, "key", None)
            for offset, value in enumerate(self._items):
                yield keyed(self.start + offset, value, key)
            return
        between = getattr(self.source, "records_between", None)
        records = (
            between(self.start, self.stop)
            if between is not None
            else islice(self.source.records(), self.start, self.stop)
        )
        for record in records:
            self.place = self.source.place  # where it sits, as the whole source names it
            yield record

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "range": [self.start, self.stop]}

    def check(self) -> None:
        self.source.check()

    def count(self) -> int:
        """The range's length (the planner cut it to the source's size)."""
        return self.stop - self.start

    @property
    def keys_unique(self) -> bool:
        return self.source.keys_unique
