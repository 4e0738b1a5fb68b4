"""One output file that grows by appending, cut back to its committed length on resume."""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

from .records import Recovered

__all__ = ["AppendingFileSink"]


class AppendingFileSink(abc.ABC):
    """Appends encoded lines to one file; the committed state is the file's length.

    Every write is flushed and fsynced before the run store records the new
    length, and a resume first cuts the file back to the recorded length,
    removing output of items that were not committed (they run again).
    Subclasses say how an output becomes bytes (:meth:`encode`) and may write a
    header before the first line (:meth:`header`).
    """

    flush_items = 1000
    flush_interval_s = 0.2
    keeps_journal = False
    kind = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: Any = None
        self._offset = 0

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {"kind": self.kind, "path": str(self.path.resolve())}

    @abc.abstractmethod
    def encode(self, key: str, value: Any) -> bytes:
        """One output as the bytes of its line(s), ending with a newline."""

    def header(self) -> bytes:
        """What a new file starts with (nothing by default)."""
        return b""

    def state(self) -> dict[str, Any]:
        """The state to commit: the file's length (subclasses add to it)."""
        return {"offset": self._offset}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` recorded, beyond the length (nothing by default)."""
        return None

    def open(self, state: dict[str, Any]) -> Recovered | None:
        """Open for appending, after cutting the file back to the committed ``state``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = int(state.get("offset", 0))
        self.restore(state)
        self._handle = self.path.open("a+b")
        self._handle.truncate(self._offset)
        self._handle.seek(self._offset)
        return None

    def write(self, records: list[bytes], journal: bytes | None = None) -> dict[str, Any]:
        """Write ``records`` durably; return the state to commit with them."""
        if records:
            head = self.header() if self._offset == 0 else b""
            self._handle.write(head + b"".join(records))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._offset = self._handle.tell()
        return self.state()

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
