"""What sources yield and sinks take: keyed records, bad records, and JSON encoding."""

from __future__ import annotations

import base64
import decimal
import hashlib
import json
import os
import re
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sized
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..errors import NotAFile
from ..values.checks import nearest

__all__ = [
    "BadRecord",
    "refuse_special_file",
    "DurableSink",
    "Head",
    "KeyedSource",
    "Recovered",
    "Source",
    "encode_json",
    "item_key",
]


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record the source could not read: where it is and why.

    The runner turns it into a dead letter (step ``<source>``, error ``BadInput``)
    or stops the run, as ``on_bad_input`` says.
    """

    where: str
    reason: str
    raw: str = ""


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    # Arrow's types as Python gives them (a Parquet source's decimal128, timestamp[ns],
    # binary columns): a decimal as its digits, a time in ISO 8601, bytes in base64
    if isinstance(value, decimal.Decimal):
        return str(value)
    isoformat = getattr(value, "isoformat", None)  # a pandas Timestamp (orjson takes datetime)
    if callable(isoformat):
        return isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_PLAIN = orjson.OPT_SERIALIZE_NUMPY
_SORTED = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS


def encode_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Encode ``value`` as one line of JSON (pydantic models, dataclasses, numpy too).

    Raises:
        TypeError: the value has a part that cannot be encoded.
    """
    # orjson encodes dataclasses, datetimes and UUIDs itself; _default does the rest
    try:
        return orjson.dumps(value, default=_default, option=_SORTED if sort_keys else _PLAIN)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
    # an integer beyond 64 bits (orjson refuses it): the standard library writes it exact
    plain = orjson.loads(orjson.dumps(_without_big_ints(value), default=_default))
    return json.dumps(_restore_big_ints(plain), sort_keys=sort_keys, separators=(",", ":")).encode()


_BIG = "\x00headrace-int:"  # a placeholder no real string starts with


def _without_big_ints(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return _BIG + str(value)
    if isinstance(value, dict):
        return {k: _without_big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_big_ints(v) for v in value]
    return value


def _restore_big_ints(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_BIG):
        return int(value[len(_BIG) :])
    if isinstance(value, dict):
        return {k: _restore_big_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_big_ints(v) for v in value]
    return value


# orjson reads an integer beyond 64 bits as a float (1e29: two such ids can collide);
# text with a run of 19 or more digits is read by the standard library instead, which
# keeps every integer exact
_LONG_NUMBER = re.compile(rb"\d{19,}")


def decode_json(data: bytes) -> Any:
    """``data`` as JSON, integers of any size kept exact.

    Raises:
        ValueError: not JSON (``orjson.JSONDecodeError`` or ``json.JSONDecodeError``).
    """
    return json.loads(data) if _LONG_NUMBER.search(data) else orjson.loads(data)


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def refuse_special_file(path: str | os.PathLike[str], role: str) -> None:
    """Refuse a path that exists and is a FIFO, a device or a socket, before anything
    opens it (opening a FIFO waits for a writer: the run would hang).

    Raises:
        NotAFile: it is one (a ``ValueError`` too), with why ``role`` (``"source"``,
            ``"sink"``) needs a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing (a sink creates it; a source is refused as missing elsewhere)
    for test, kind in _SPECIAL:
        if test(mode):
            why = (
                "a source is read more than once (its size, its records, again on a "
                "resume): copy it to a regular file first"
                if role == "source"
                else "a durable sink must be a regular file or a directory that it can "
                "check and cut back on resume; write to a file and read that"
            )
            raise NotAFile(f"{path} is {kind}, not a regular file: {why}")


def item_key(index: int, value: Any) -> str:
    """The default key of an item: its source position and a hash of its content.

    Stable across runs over the same, unchanged source.
    """
    try:
        content = encode_json(value, sort_keys=True)
    except TypeError:
        content = repr(value).encode()
    return f"{index}:{hashlib.sha256(content).hexdigest()[:16]}"


class Source:
    """A source of keyed records: ``(key, value)`` pairs or :class:`BadRecord`.

    Subclasses read one format; :meth:`describe` records how to open the same
    source again (for ``headrace resume``). A source that knows where each record
    sits sets :attr:`place` (``file:line``) before yielding it, so an error found
    later about that record (a repeated key) can name it.
    """

    place: str | None = None

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        """Yield the records in source order."""
        raise TypeError(f"{type(self).__name__} does not define records()")

    def describe(self) -> dict[str, Any]:
        """A JSON description of the source, stored with the run."""
        return {"kind": type(self).__name__}

    def check(self) -> None:
        """Refuse, before anything runs, a source that cannot be read at all.

        Raises:
            FileNotFoundError: a file or directory is missing.
            ValueError: the source is unreadable as a whole (not Parquet, no header ...).
        """

    def count(self) -> int | None:
        """The number of records if it is cheap to know (for progress), else ``None``."""
        return None

    def positions(self) -> int | None:
        """The number of records, reading the whole source if that is the only way
        (to split it across workers); ``None`` if it cannot be known (a generator).
        Default: :meth:`count`."""
        return self.count()

    @property
    def keys_unique(self) -> bool:
        """Whether keys cannot repeat (they are positions or paths): no need to check."""
        return getattr(self, "key", "") is None

    def __iter__(self) -> Iterator[Any]:
        """The values alone (a source can be used as a plain iterable)."""
        for record in self.records():
            if isinstance(record, BadRecord):
                raise ValueError(f"{record.where}: {record.reason}")
            yield record[1]


class Head(Source):
    """The first ``n`` records of another source (bad ones count): a sample of it."""

    def __init__(self, source: Source, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"a sample needs n >= 1 records, got {n!r}")
        self.source = source
        self.n = n

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        for taken, record in enumerate(self.source.records()):
            if taken >= self.n:
                return
            self.place = self.source.place
            yield record

    def describe(self) -> dict[str, Any]:
        return {"kind": "Head", "n": self.n, "source": self.source.describe()}

    def check(self) -> None:
        self.source.check()

    def count(self) -> int | None:
        whole = self.source.count()
        return None if whole is None else min(whole, self.n)

    @property
    def keys_unique(self) -> bool:
        return self.source.keys_unique


class KeyedSource(Source):
    """Any iterable of items, keyed by ``key`` (a field name or a function) or by default.

    Args:
        items: the items.
        key: a field name (``item[key]``, or ``getattr`` for objects), a function
            of the item, or ``None`` for :func:`item_key`.
    """

    def __init__(self, items: Iterable[Any], key: str | Callable[[Any], Any] | None) -> None:
        self.items = items
        self.key = key

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        for index, value in enumerate(self.items):
            yield keyed(index, value, self.key)

    def count(self) -> int | None:
        """The number of items, if the iterable has a length."""
        return len(self.items) if isinstance(self.items, Sized) else None

    def check(self) -> None:
        """Refuse a key field the first item lacks (where the first item can be seen
        without consuming the iterable): a setting wrong for every item, not bad data."""
        items = self.items
        if isinstance(self.key, str) and isinstance(items, SequenceABC) and len(items):
            first = keyed(0, items[0], self.key)
            if isinstance(first, BadRecord):
                raise ValueError(missing_key_field(self.key, "the first item", items[0]))

    def describe(self) -> dict[str, Any]:
        key = self.key if isinstance(self.key, str) or self.key is None else "<function>"
        return {"kind": "iterable", "key": key}


class AsyncKeyedSource(KeyedSource):
    """Any async iterable of items, keyed as :class:`KeyedSource` keys them."""

    def __init__(self, items: AsyncIterable[Any], key: str | Callable[[Any], Any] | None) -> None:
        self.async_items = items
        self.items = ()
        self.key = key

    def count(self) -> None:
        """Unknown: an async iterable has no length."""
        return None

    async def arecords(self) -> AsyncIterator[tuple[str, Any] | BadRecord]:
        """Yield the records in source order."""
        index = 0
        async for value in self.async_items:
            yield keyed(index, value, self.key)
            index += 1

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": "async iterable"}


def keyed(
    index: int, value: Any, key: str | Callable[[Any], Any] | None
) -> tuple[str, Any] | BadRecord:
    """The item at ``index`` as a keyed record (a field, a function of it, or by default)."""
    if key is None:
        return item_key(index, value), value
    try:
        if callable(key):
            found = key(value)
        elif isinstance(value, dict):
            found = value[key]
        else:
            found = getattr(value, key)
    except (KeyError, AttributeError, TypeError) as exc:
        return BadRecord(f"item {index}", f"no key field {key!r} ({exc!r})")
    return str(found), value


def missing_key_field(key: str, where: str, value: Any) -> str:
    """Words for a key field missing from the first record, naming the fields it has."""
    if not isinstance(value, dict):
        return f"{where} has no key field {key!r}: it is a {type(value).__name__}, not an object"
    fields = [str(name) for name in value]
    shown = ", ".join(repr(name) for name in fields[:20]) or "none"
    return f"{where} has no key field {key!r}{nearest(key, fields)}; its fields: {shown}"


class DurableSink(Protocol):
    """A sink whose writes are committed with the run store and undone (or redone) on resume.

    ``flush_items`` and ``flush_interval_s`` tell the writer how often to commit:
    after that many finished items, or that many seconds, whichever comes first.
    A sink that sets ``keeps_journal`` stores the run store's part of each
    commit (the journal) in its own transaction, so that a commit that reached
    the sink but not the store is rolled forward on resume instead of redone.
    """

    flush_items: int
    flush_interval_s: float
    keeps_journal: bool

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""

    def encode(self, key: str, value: Any) -> Any:
        """Turn the output ``value`` of item ``key`` into what :meth:`write` takes.

        Called once per output as it finishes; a ``TypeError`` or ``ValueError``
        makes that item a dead letter of the sink instead.
        """

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """Prepare to write, removing anything not covered by the committed ``state``.

        A sink that keeps a journal returns the commit it holds beyond ``state``.

        Raises:
            OutputExists: a new run (nothing committed) would overwrite output that
                is already there, and ``overwrite`` is false.
            SinkDamaged: a resumed run's sink no longer holds what was committed.
        """

    def set_aside(self) -> str | None:
        """Move the sink's output out of the way (``--rebuild-sink``); return where to."""

    def write(self, records: list[Any], journal: bytes | None) -> dict[str, Any]:
        """Write ``records`` durably and return the state to commit with them."""

    def close(self) -> None:
        """Release files and connections."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """A commit that a journaled sink holds but the run store does not (killed in between).

    ``journal`` is what the writer passed to :meth:`DurableSink.write`; ``state``
    is the sink's state after that write.
    """

    journal: bytes
    state: dict[str, Any]
