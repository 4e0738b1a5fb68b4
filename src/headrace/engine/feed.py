"""The feed: how a run's lanes take items from its source, one at a time.

A plain source hands on its items. A keyed source (a reader, or any source of a
durable run) hands on ``(index, key, value)``: each record numbered in the order
it was read, its key checked against the duplicate-key policy, and records a
durable session finished before skipped. A failure of the source's iterator
ends the feed and is kept as ``source_error`` for the run to raise once the
items already read have finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from ..io.keys import Duplicates, KeyLedger
from ..io.records import BadRecord, encode_json
from ..store.session import DurableSession

__all__ = ["DUPLICATE", "END", "Duplicates", "Feed"]


class _End:
    def __repr__(self) -> str:
        return "<end of source>"


END: Any = _End()
"""What the feed hands on once the source has ended (or failed, or was stopped)."""


class _Duplicate:
    def __repr__(self) -> str:
        return "<a repeated key, dropped>"


DUPLICATE: Any = _Duplicate()
"""The value of a record dropped by ``duplicates="first"``."""


class Feed:
    """A run's source, read by its lanes (see the module's notes)."""

    def __init__(
        self,
        items: Iterator[Any] | AsyncIterator[Any],
        *,
        keyed: bool,
        session: DurableSession | None,
        duplicates: Duplicates | None,
        places: Any,
        repeats: Mapping[int, str] | None = None,
    ) -> None:
        self.items = items
        self.is_async = isinstance(items, AsyncIterator)
        self.keyed = keyed
        self.session = session
        self.places = places  # the Source, whose .place names the record just read
        # keys seen so far, when the source's keys may repeat: memory grows with the
        # number of distinct keys (about 100 bytes each), the one cost that is not bounded
        self.duplicates = duplicates
        # positions found beforehand to repeat a key, with the key the policy gives them
        # (a shard of a run on a cluster: the whole source was scanned once)
        self.repeats = repeats
        self.ledger = (
            KeyLedger(suffix=duplicates == "suffix")
            if duplicates is not None and repeats is None
            else None
        )
        self.position = 0  # records read, bad ones included
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.lock = asyncio.Lock()

    def stop(self, error: BaseException | None = None) -> None:
        """Hand on no more items (``error``: the reason, raised when the run ends)."""
        self.exhausted = True
        if error is not None:
            self.source_error = error

    def pull(self) -> Any:
        """The next item of a sync source, or :data:`END`."""
        while not self.exhausted:
            try:
                record = next(self.items)  # type: ignore[arg-type]
            except StopIteration:
                self._ended()
                break
            except Exception as exc:
                self.stop(exc)
                break
            if not self.keyed:
                return record
            admitted = self._admit(record)
            if admitted is not None:
                return admitted
        return END

    async def pull_async(self) -> Any:
        """The next item of an async source, or :data:`END`; one lane reads at a time."""
        async with self.lock:
            while not self.exhausted:
                try:
                    record = await anext(self.items)  # type: ignore[arg-type]
                except StopAsyncIteration:
                    self._ended()
                    break
                except Exception as exc:
                    self.stop(exc)
                    break
                if not self.keyed:
                    return record
                admitted = self._admit(record)
                if admitted is not None:
                    return admitted
            return END

    def _ended(self) -> None:
        self.exhausted = True
        if self.session is not None:
            self.session.check_read_all(self.position)

    def _admit(self, record: Any) -> tuple[int, str, Any] | None:
        """Number a record, apply the duplicate-key policy, and return it to run,
        or ``None`` if the session skips it."""
        index = self.position
        self.position = index + 1
        if isinstance(record, BadRecord):
            key, value = f"bad:{index}", record
        else:
            key, value = record
            if self.ledger is not None:
                given = self.ledger.admit(key)
                if given is not None:
                    key, value = self._repeated(index, key, given, value)
            elif self.repeats is not None and index in self.repeats:
                key, value = self._repeated(index, key, self.repeats[index], value)
        if self.session is not None and self.session.skip(index, key):
            return None
        return index, key, value

    def _repeated(self, index: int, key: str, given: str, value: Any) -> tuple[str, Any]:
        """A record whose key an earlier one has, as the duplicate-key policy treats it
        (``given``: the key ``"suffix"`` gives it)."""
        if self.duplicates == "first":
            return key, DUPLICATE
        if self.duplicates == "error":
            place = getattr(self.places, "place", None) or f"record {index + 1} of the source"
            try:
                shown = encode_json(value).decode()
            except TypeError:
                shown = repr(value)
            return key, BadRecord(
                place, f"duplicate key {key!r} (an earlier record has it)", shown[:200]
            )
        return given, value
