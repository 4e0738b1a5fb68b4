"""JSON Lines: a streaming source, and a single-file sink that resumes exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .appending import AppendingFileSink
from .records import (
    BadRecord,
    Source,
    decode_json,
    encode_json,
    missing_key_field,
    refuse_special_file,
)

__all__ = ["JsonlSink", "JsonlSource", "read_jsonl", "write_jsonl"]

_BOM = b"\xef\xbb\xbf"


class JsonlSource(Source):
    """Reads a ``.jsonl`` file one line at a time; see :func:`read_jsonl`."""

    def __init__(self, path: str | os.PathLike[str], key: str | None = None) -> None:
        self.path = Path(path)
        self.key = key

    def describe(self) -> dict[str, Any]:
        return {"kind": "jsonl", "path": str(self.path.resolve()), "key": self.key}

    def _open(self) -> Any:
        refuse_special_file(self.path, "source")  # a FIFO would wait for a writer
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise FileNotFoundError(f"cannot read {self.path}: {exc.strerror}") from exc

    def check(self) -> None:
        """Refuse a file that cannot be opened, or a key field its first record lacks
        (a setting wrong for every record, not bad data: nothing runs)."""
        with self._open() as handle:
            if self.key is None:
                return
            for number, raw in enumerate(handle, start=1):
                line = raw.removeprefix(_BOM).strip() if number == 1 else raw.strip()
                if not line:
                    continue
                try:
                    value = decode_json(line)
                except ValueError:
                    return  # a bad record: the run reports it in its place
                if not isinstance(value, dict) or self.key not in value:
                    raise ValueError(
                        missing_key_field(
                            self.key, f"{self.path}:{number}: the first record", value
                        )
                    )
                return

    def count(self) -> int:
        """The number of lines (a fast scan of the bytes; blank lines are counted too)."""
        lines = 0
        last = b"\n"
        with self._open() as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        return lines + (last != b"\n")

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        return self.records_between(0, None)

    def records_between(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The records on the lines at positions ``start`` to ``stop`` (excluded; ``None``:
        to the end), counted from 0 as :meth:`count` counts them. The lines before
        ``start`` are passed over by counting newlines, without parsing them, so a
        worker's shard of a large file costs a scan of the bytes before it."""
        with self._open() as handle:
            _skip_lines(handle, start)
            for number, raw in enumerate(handle, start=start + 1):
                if stop is not None and number > stop:
                    return
                where = f"{self.path}:{number}"
                if number == 1 and raw.startswith(_BOM):  # a byte-order mark, not data
                    raw = raw[len(_BOM) :]
                line = raw.strip()
                if not line:
                    continue
                try:
                    value = decode_json(line)
                except (orjson.JSONDecodeError, ValueError) as exc:
                    yield BadRecord(where, _why_not_json(raw, exc), _shown(line))
                    continue
                self.place = where
                if self.key is None:
                    yield f"line:{number}", value
                elif not isinstance(value, dict):
                    yield BadRecord(
                        where,
                        f"expected a JSON object with the key field {self.key!r}, "
                        f"got {type(value).__name__}",
                        _shown(line),
                    )
                elif self.key not in value:
                    yield BadRecord(where, f"missing key field {self.key!r}", _shown(line))
                else:
                    yield str(value[self.key]), value


def _skip_lines(handle: Any, lines: int) -> None:
    """Move ``handle`` to the start of the line after the first ``lines`` newlines."""
    if lines <= 0:
        return
    at = 0
    while chunk := handle.read(1 << 20):
        found = chunk.count(b"\n")
        if found < lines:
            lines -= found
            at += len(chunk)
            continue
        position = -1
        for _ in range(lines):
            position = chunk.index(b"\n", position + 1)
        handle.seek(at + position + 1)
        return
    # fewer lines than asked for: the range is empty (the handle is at the end)


def _why_not_json(raw: bytes, exc: Exception) -> str:
    """Our words and the place (in the line as the file has it): the parser's wording
    changes between versions."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 (at byte {bad.start + 1})"
    column = getattr(exc, "colno", None)
    return "not valid JSON" + (f" (at column {column})" if column else "")


def _shown(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace")
    return text if len(text) <= 200 else text[:200] + "…"


def read_jsonl(path: str | os.PathLike[str], *, key: str | None = None) -> JsonlSource:
    """Read a JSON Lines file lazily, one record per non-empty line.

    Args:
        path: the file.
        key: the field that identifies each record; without one, a record's key is
            its line number (stable while the file does not change).

    A line that is not JSON, not an object, or lacks the key field is a
    :class:`BadRecord` naming the file and line.
    """
    return JsonlSource(path, key)


class JsonlSink(AppendingFileSink):
    """Appends outputs to one ``.jsonl`` file, one JSON object a line; see :func:`write_jsonl`."""

    kind = "jsonl"

    def encode(self, key: str, value: Any) -> bytes:
        """The output as one line of JSON."""
        return encode_json(value) + b"\n"


def write_jsonl(path: str | os.PathLike[str]) -> JsonlSink:
    """Write outputs to one JSON Lines file, exactly once per item across resumes.

    The file's committed length is recorded with each commit; a resume cuts off
    whatever was written after it (those items run again).
    """
    return JsonlSink(path)
