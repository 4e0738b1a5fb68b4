"""A stratified sample of a source: the source cut into ``size`` equal runs of items
in source order, and one item drawn at random from each, so every part of the
source (early and late records, every file of a directory) is in the sample.

A :class:`~headrace.io.records.Source` (a file, a directory, a table) is read twice,
once to count it and once to pick, holding only the sample; a sequence is indexed;
any other iterable is read into memory once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import PipelineError
from ..io.records import BadRecord, Source
from ..values.checks import positive_int

__all__ = ["Sample", "stratified"]


class Sample:
    """The items drawn from a source, and how many it holds.

    Attributes:
        total: the source's items (bad records left out).
        items: the sample, in source order: values of a plain iterable, and the
            records of a :class:`~headrace.io.records.Source` as ``(key, value)``.
        positions: each sampled item's position among the source's items.
    """

    def __init__(self, total: int, items: list[Any], positions: list[int]) -> None:
        self.total = total
        self.items = items
        self.positions = positions


def stratified(source: Any, size: int, seed: int = 0) -> Sample:
    """``size`` items of ``source``, one drawn at random from each of ``size`` equal
    runs of its items (all of them when it holds fewer).

    Raises:
        PipelineError: ``size`` is not a positive integer, or the source is empty.
    """
    positive_int(size, "estimate sample")
    if isinstance(source, Source):
        total = sum(1 for entry in source.records() if not isinstance(entry, BadRecord))
        wanted = _picks(total, size, seed)
        items: list[Any] = []
        position = 0
        for entry in source.records():
            if isinstance(entry, BadRecord):
                continue
            if position in wanted:
                items.append(entry)
            position += 1
        return Sample(total, items, sorted(wanted))
    values = source if isinstance(source, Sequence) else list(_iterable(source))
    picks = sorted(_picks(len(values), size, seed))
    return Sample(len(values), [values[i] for i in picks], picks)


def _iterable(source: Any) -> Iterable[Any]:
    if not isinstance(source, Iterable):
        raise PipelineError(f"estimate: the source must be iterable, got {type(source).__name__}")
    return source


def _picks(total: int, size: int, seed: int) -> set[int]:
    """One position drawn from each of ``size`` equal runs of ``range(total)``."""
    if total == 0:
        raise PipelineError("estimate: the source holds no item to sample")
    if total <= size:
        return set(range(total))
    rng = random.Random(seed)
    picks = set()
    for stratum in range(size):
        start = stratum * total // size
        end = (stratum + 1) * total // size
        picks.add(rng.randrange(start, end))
    return picks
