"""JSON Lines: a streaming source, and a single-file sink that resumes exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .records import BadRecord, Source

__all__ = ["JsonlSink", "JsonlSource", "read_jsonl", "write_jsonl"]


class JsonlSource(Source):
    """Reads a ``.jsonl`` file one line at a time; see :func:`read_jsonl`."""

    def __init__(self, path: str | os.PathLike[str], key: str | None = None) -> None:
        self.path = Path(path)
        self.key = key

    def describe(self) -> dict[str, Any]:
        return {"kind": "jsonl", "path": str(self.path.resolve()), "key": self.key}

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise FileNotFoundError(f"cannot read {self.path}: {exc.strerror}") from exc
        with handle:
            for number, raw in enumerate(handle, start=1):
                where = f"{self.path}:{number}"
                line = raw.strip()
                if not line:
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    # our words and the column: the parser's wording changes between versions
                    yield BadRecord(where, f"not valid JSON (at column {exc.colno})", _shown(line))
                    continue
                if self.key is None:
                    yield f"line:{number}", value
                elif not isinstance(value, dict):
                    yield BadRecord(
                        where,
                        f"expected a JSON object with a {self.key!r} field, "
                        f"got {type(value).__name__}",
                        _shown(line),
                    )
                elif self.key not in value:
                    yield BadRecord(where, f"missing key field {self.key!r}", _shown(line))
                else:
                    yield str(value[self.key]), value


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


class JsonlSink:
    """Appends outputs to one ``.jsonl`` file; see :func:`write_jsonl`.

    The committed state is the file's length: every write is flushed and
    fsynced before the run store records the new length, and a resume first cuts
    the file back to the recorded length, removing output of items that were
    not committed (they run again).
    """

    flush_items = 1000
    flush_interval_s = 0.2

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: Any = None
        self._offset = 0

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {"kind": "jsonl", "path": str(self.path.resolve())}

    def open(self, state: dict[str, Any]) -> None:
        """Open for appending, after cutting the file back to the committed ``state``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = int(state.get("offset", 0))
        self._handle = self.path.open("a+b")
        self._handle.truncate(self._offset)
        self._handle.seek(self._offset)

    def write(self, lines: list[bytes]) -> dict[str, Any]:
        """Write ``lines`` durably; return the state to commit with them."""
        if lines:
            self._handle.write(b"\n".join(lines) + b"\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._offset = self._handle.tell()
        return {"offset": self._offset}

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_jsonl(path: str | os.PathLike[str]) -> JsonlSink:
    """Write outputs to one JSON Lines file, exactly once per item across resumes."""
    return JsonlSink(path)
