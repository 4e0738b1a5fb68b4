"""One output file that grows by appending, cut back to its committed length on resume."""

from __future__ import annotations

import abc
import copy
import logging
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputExists, SinkDamaged
from .parts import aside, file_crc, fsync_dir
from .records import Recovered, decode_json, refuse_special_file

_log = logging.getLogger("headrace.run")

__all__ = ["AppendingFileSink"]


class AppendingFileSink(abc.ABC):
    """Appends encoded lines to one file; the committed state is the file's length.

    Every write is flushed and fsynced before the run store records the new
    length and a running CRC-32 of the content, and a resume first checks that
    the file still holds that content (refusing a deleted, shortened or edited
    file), then cuts it back to the recorded length, removing output of items
    that were not committed (they run again; the bytes cut are kept in
    ``<file>.uncommitted-<time>`` beside it). A new run refuses a non-empty file
    unless asked to overwrite it.
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
        self._crc = 0

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {"kind": self.kind, "path": str(self.path.resolve())}

    @abc.abstractmethod
    def encode(self, key: str, value: Any) -> bytes:
        """One output as the bytes of its line(s), ending with a newline."""

    def lock_path(self) -> Path:
        """The file whose OS lock the writing session holds (see :mod:`headrace.io.locking`)."""
        return self.path.with_name(f".{self.path.name}.lock")

    def header(self) -> bytes:
        """What a new file starts with (nothing by default)."""
        return b""

    def state(self) -> dict[str, Any]:
        """The state to commit: the file's length (subclasses add to it)."""
        return {"offset": self._offset, "crc": self._crc}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` recorded, beyond the length (nothing by default)."""
        return None

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """Open for appending, after checking the file against the committed ``state``
        and cutting it back to it (see the class notes)."""
        refuse_special_file(self.path, "sink")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._finish_rewrite(state)
        self._offset = int(state.get("offset", 0))
        self._crc = int(state.get("crc", 0))
        if "offset" in state:
            self._verify(state)
        elif not overwrite and self.path.exists() and self.path.stat().st_size:
            raise OutputExists(
                f"{self.path} already holds {self.path.stat().st_size:,} bytes that this run "
                "did not write; pass --overwrite (overwrite=True in Python) to replace it, "
                "or choose another path"
            )
        self.restore(state)
        self._handle = self.path.open("a+b")
        if "offset" in state:
            self._keep_tail()
        self._handle.truncate(self._offset)
        self._handle.seek(self._offset)
        return None

    def _keep_tail(self) -> None:
        """Copy what the file holds beyond the committed length into a file beside it
        before the cut, saying where: a resume never deletes bytes (the run's own
        uncommitted lines, or lines someone appended)."""
        handle = self._handle
        end = handle.seek(0, os.SEEK_END)
        if end <= self._offset:
            return
        target = aside(self.path, "uncommitted")
        handle.seek(self._offset)
        with target.open("xb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        _log.warning(
            "headrace: %s held %s bytes beyond what the run committed; moved them to %s",
            self.path,
            f"{end - self._offset:,}",
            target,
        )

    def write(self, records: list[bytes], journal: bytes | None = None) -> dict[str, Any]:
        """Write ``records`` durably; return the state to commit with them."""
        if records:
            head = self.header() if self._offset == 0 else b""
            data = head + b"".join(records)
            self._handle.write(data)
            self._crc = zlib.crc32(data, self._crc)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._offset = self._handle.tell()
        return self.state()

    def _verify(self, state: dict[str, Any]) -> None:
        committed = self._offset
        way_out = (
            "; resume with --rebuild-sink (rebuild_sink=True in Python) to set it aside "
            "and compute its items again"
        )
        if not self.path.exists():
            if committed:
                raise SinkDamaged(
                    f"{self.path} is gone, but the run committed {committed:,} bytes to it"
                    + way_out
                )
            return
        size = self.path.stat().st_size
        if size < committed:
            raise SinkDamaged(
                f"{self.path} holds {size:,} bytes, but the run committed {committed:,} "
                "(it was cut short or replaced)" + way_out
            )
        if "crc" in state:  # runs from before the checksum have only the length
            crc = 0
            with self.path.open("rb") as handle:
                left = committed
                while left:
                    chunk = handle.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    crc = zlib.crc32(chunk, crc)
                    left -= len(chunk)
            if crc != int(state["crc"]):
                raise SinkDamaged(
                    f"{self.path}: its first {committed:,} bytes are not what the run "
                    "committed (the file was edited or replaced)" + way_out
                )

    def split(self, handle: Any) -> Iterator[bytes]:
        """The records of an open file, as their bytes (one line each by default)."""
        yield from handle

    def decode(self, record: bytes) -> Any:
        """One record's bytes as the output they hold (JSON by default)."""
        return decode_json(record)

    def outputs(self) -> Iterator[Any]:
        """The committed outputs, in the order written (the file is open: cut to them)."""
        with self.path.open("rb") as handle:
            records = self.split(handle)
            for _ in range(self.header_lines):
                next(records, None)
            for record in records:
                yield self.decode(record)

    @property
    def _rewriting(self) -> Path:
        return self.path.with_name(f".{self.path.name}.rewrite")

    def rewrite_without(self, positions: set[int]) -> dict[str, Any]:
        """Write, beside the file, the file without the records at ``positions``
        (counted from 0 after the header), durably; return the state to commit, which
        names that file: once committed, :meth:`finish_rewrite` (or a later
        :meth:`open`) puts it in the file's place. Until then the file is as it was."""
        temporary = self._rewriting
        out: Any
        with self.path.open("rb") as handle, _Counting(temporary.open("wb")) as out:
            records = self.split(handle)
            head = b"".join(next(records, b"") for _ in range(self.header_lines))
            kept = (r for i, r in enumerate(records) if i not in positions)
            first = next(kept, None)
            if first is not None:  # no record left: an empty file (a write adds the header)
                out.write(head + first)
                for record in kept:
                    out.write(record)
            out.flush()
            os.fsync(out.fileno())
        return {**self.state(), "offset": out.size, "crc": out.crc, "rewrite": temporary.name}

    def finish_rewrite(self, state: dict[str, Any]) -> None:
        """Put the rewritten file in the file's place (``state`` committed), and go on
        appending to it."""
        self.close()
        self._finish_rewrite(state)
        self._offset, self._crc = int(state["offset"]), int(state["crc"])
        self._handle = self.path.open("a+b")
        self._handle.seek(self._offset)

    def _finish_rewrite(self, state: dict[str, Any]) -> None:
        temporary = self._rewriting
        if (
            state.get("rewrite") == temporary.name
            and temporary.is_file()
            and temporary.stat().st_size == state.get("offset")
            and file_crc(temporary) == state.get("crc")
        ):
            os.replace(temporary, self.path)
            fsync_dir(self.path.parent)
        else:  # a rewrite the store never committed (killed before): the file is whole
            temporary.unlink(missing_ok=True)

    def set_aside(self) -> str | None:
        """Rename the file to ``<name>.damaged-<time>``; return the new name."""
        if not self.path.exists():
            return None
        target = aside(self.path, "damaged")
        os.replace(self.path, target)
        return str(target)

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    header_lines = 0
    """How many lines :meth:`header` writes (each shard's file starts with them)."""

    @property
    def shards_dir(self) -> Path:
        """Where the files of a run split into shards go: ``<file>.shards/``."""
        return self.path.with_name(f"{self.path.name}.shards")

    def for_shard(self, index: int) -> AppendingFileSink:
        """The sink of one shard of a run split across workers: the same format in
        ``<file>.shards/<index><suffix>``, joined into the file by :meth:`join_shards`."""
        shard = copy.copy(self)
        shard.path = self.shards_dir / f"{index:05d}{self.path.suffix}"
        shard._handle, shard._offset, shard._crc = None, 0, 0
        return shard

    def clear_shards(self) -> None:
        """Remove the shard files of an earlier run (a new run starts without them)."""
        shutil.rmtree(self.shards_dir, ignore_errors=True)

    def join_shards(self, count: int) -> dict[str, Any]:
        """Write the file as shards ``0 .. count-1`` in order (one header), replacing it
        at once: a kill leaves the old file or the whole new one, and joining again
        gives the same file. Returns the joined file's size and CRC-32 (what
        :meth:`check_joined` checks once the shard files are gone).

        Raises:
            SinkDamaged: two shards' files start with different headers.
        """
        temporary = self.path.with_name(f".{self.path.name}.joining")
        header: bytes | None = None
        out: Any
        with _Counting(temporary.open("wb")) as out:
            for index in range(count):
                path = self.for_shard(index).path
                if not path.exists():
                    continue
                with path.open("rb") as handle:
                    head = b"".join(handle.readline() for _ in range(self.header_lines))
                    if header is None:
                        header = head
                        out.write(head)
                    elif head != header:
                        raise SinkDamaged(
                            f"{path} starts with {head!r}, but the shards before it with "
                            f"{header!r}: the shards wrote different columns"
                        )
                    shutil.copyfileobj(handle, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        return {"joined_size": out.size, "joined_crc": out.crc}

    def check_joined(self, state: dict[str, Any]) -> None:
        """Check the joined file against what :meth:`join_shards` returned (its shards
        are gone, so it cannot be joined again).

        Raises:
            SinkDamaged: the file is missing or not the one joined.
        """
        size, crc = state.get("joined_size"), state.get("joined_crc")
        found = self.path.stat().st_size if self.path.is_file() else None
        if found is None or found != size or file_crc(self.path) != crc:
            raise SinkDamaged(
                f"{self.path} is not the file this finished run joined from its shards "
                f"({'missing' if found is None else 'changed'} since): run it again with "
                "--fresh (or fresh=True)"
            )


class _Counting:
    """A binary file that counts the bytes written to it and their CRC-32."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.size, self.crc = handle, 0, 0

    def __enter__(self) -> _Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        written: int = self.handle.write(data)
        return written

    def flush(self) -> None:
        self.handle.flush()

    def fileno(self) -> int:
        number: int = self.handle.fileno()
        return number
