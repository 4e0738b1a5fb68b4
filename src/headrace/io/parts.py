"""Sinks that write a directory of part files, each written whole and linked into place.

Each part is written to a hidden temporary name, fsynced and linked to its
name (a link never replaces a file already there), and only then recorded in
the run store with its size and CRC-32. A resume checks every committed part
against both, and moves any part the store does not list (linked but not
committed when the run was killed, or put there by someone else) into a
sibling folder ``<dir>.uncommitted-<time>/``, saying where in one line; it never
deletes a file it did not write. The directory then holds each item once. Files
that are not parts (other names) are left alone.
"""

from __future__ import annotations

import abc
import copy
import functools
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import HeadraceError, OutputExists, SinkDamaged
from ..values.checks import positive_int
from .records import Recovered, decode_json, encode_json, refuse_special_file

__all__ = ["BatchDirSink", "PartDirectorySink", "aside", "file_crc", "fsync_dir", "write_batches"]

_log = logging.getLogger("headrace.run")


class PartDirectorySink(abc.ABC):
    """The part-file machinery; subclasses encode outputs and write one part.

    Args:
        directory: where the files go.
        items_per_file: the writer commits a part after this many finished items
            (dead and filtered ones count too), or after 2 seconds with fewer, so a
            kill loses at most that much work; a part holds about this many rows.
    """

    flush_interval_s = 2.0
    keeps_journal = False
    kind = "parts"
    prefix = "part-"
    suffix = ""
    digits = 5

    def __init__(self, directory: str | os.PathLike[str], items_per_file: int) -> None:
        positive_int(items_per_file, "items_per_file")
        self.directory = Path(directory)
        self.items_per_file = items_per_file
        self.flush_items = items_per_file
        self._parts: list[str] = []
        self._sizes: dict[str, int] = {}
        self._crcs: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        described = {
            "kind": self.kind,
            "path": str(self.directory.resolve()),
            "items_per_file": self.items_per_file,
        }
        if self.prefix != type(self).prefix:  # a shard's sink
            described["prefix"] = self.prefix
        return described

    def lock_path(self) -> Path:
        """The file whose OS lock the writing session holds, beside the directory (not in
        it: readers of the directory never meet it); a shard's parts have their own."""
        return self.directory.with_name(f".{self.directory.name}.{self.prefix}lock")

    @abc.abstractmethod
    def encode(self, key: str, value: Any) -> Any:
        """One output as a part's writer takes it."""

    @abc.abstractmethod
    def write_part(self, path: Path, records: list[Any]) -> None:
        """Write one part file at ``path`` (flushed; the caller fsyncs and renames it)."""

    @abc.abstractmethod
    def read_part(self, path: Path) -> list[Any]:
        """The outputs one part file holds, in order."""

    @abc.abstractmethod
    def filter_part(self, path: Path, target: Path, keep: list[bool]) -> None:
        """Write at ``target`` the part at ``path`` with only the rows ``keep`` marks."""

    def state(self) -> dict[str, Any]:
        """The state to commit: the committed parts, their sizes and CRC-32s (subclasses
        add to it)."""
        return {"parts": list(self._parts), "sizes": dict(self._sizes), "crcs": dict(self._crcs)}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` recorded, beyond the parts (nothing by default)."""
        return None

    def open(self, state: dict[str, Any], *, overwrite: bool = False) -> Recovered | None:
        """Check that every committed part is there whole, then move aside every part
        that the committed ``state`` does not list (see the module notes). A new run
        refuses a directory that already holds parts unless asked to overwrite them."""
        refuse_special_file(self.directory, "sink")
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(
                f"{self.directory} is a file, not a directory: a {self.kind} sink writes a "
                "directory of part files"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._parts = [str(name) for name in state.get("parts", [])]
        self._sizes = {str(k): int(v) for k, v in dict(state.get("sizes", {})).items()}
        self._crcs = {str(k): int(v) for k, v in dict(state.get("crcs", {})).items()}
        resumed = "parts" in state
        if resumed:
            self._verify()
        elif not overwrite:
            found = sorted(p.name for p in self._part_files())
            if found:
                raise OutputExists(
                    f"{self.directory} already holds {len(found):,} part file(s) "
                    f"({found[0]}, ...) that this run did not write; pass --overwrite "
                    "(overwrite=True in Python) to replace them, or choose another directory"
                )
        self.restore(state)
        committed = set(self._parts)
        retired = {str(n) for n in state.get("retired", [])} - committed
        stray = []
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(f".{self.prefix}") and name.endswith(".tmp"):
                path.unlink()  # this sink's own torn write: never a whole part
            elif name in retired and self._is_part(name):
                path.unlink()  # replaced by its rewrite (committed): its rows are there
            elif self._is_part(name) and name not in committed:
                stray.append(path)
        if stray:
            where = self._move_aside(stray, "uncommitted")
            _log.warning(
                "headrace: %s held %d part file(s) the run never committed (%s); moved them to %s",
                self.directory,
                len(stray),
                ", ".join(sorted(p.name for p in stray)[:3]) + (", ..." if len(stray) > 3 else ""),
                where,
            )
        return None

    def _is_part(self, name: str) -> bool:
        return name.startswith(self.prefix) and name.endswith(self.suffix)

    def _part_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if self._is_part(p.name)]

    def _verify(self) -> None:
        problems = []
        for name in self._parts:
            path = self.directory / name
            if not path.is_file():
                problems.append(f"{name} is gone")
            elif name in self._sizes and path.stat().st_size != self._sizes[name]:
                problems.append(
                    f"{name} holds {path.stat().st_size:,} bytes, not the {self._sizes[name]:,} "
                    "committed"
                )
            elif name in self._crcs and file_crc(path) != self._crcs[name]:
                problems.append(f"{name} is not the file committed (its checksum differs)")
        if problems:
            shown = "; ".join(problems[:3])
            if len(problems) > 3:
                shown += f"; and {len(problems) - 3} more"
            raise SinkDamaged(
                f"{self.directory}: {shown}; resume with --rebuild-sink (rebuild_sink=True "
                "in Python) to set the parts aside and compute their items again"
            )

    def _move_aside(self, paths: list[Path], why: str) -> Path:
        target = aside(self.directory, why)
        target.mkdir(parents=True)
        for path in paths:
            os.replace(path, target / path.name)
        return target

    def outputs(self) -> Iterator[Any]:
        """The committed outputs, part by part, in the order written."""
        for name in self._parts:
            yield from self.read_part(self.directory / name)

    def rewrite_without(self, positions: set[int]) -> dict[str, Any]:
        """Write a new part for each part holding a record at ``positions`` (counted
        from 0 across the parts), without those records; return the state to commit,
        which lists the new parts in the old ones' places and names the old ones
        retired: :meth:`finish_rewrite` (or a later :meth:`open`) removes them. Until
        that state is committed, the new parts are strays that a resume sets aside."""
        parts, sizes, crcs = list(self._parts), dict(self._sizes), dict(self._crcs)
        retired = []
        start = 0
        for i, name in enumerate(self._parts):
            path = self.directory / name
            count = len(self.read_part(path))
            keep = [start + row not in positions for row in range(count)]
            start += count
            if all(keep):
                continue
            new = self._next_generation(name)
            self._place(new, functools.partial(self._filter_into, path, keep))
            parts[i] = new
            sizes[new], crcs[new] = (
                (self.directory / new).stat().st_size,
                file_crc(self.directory / new),
            )
            sizes.pop(name, None), crcs.pop(name, None)
            retired.append(name)
        return {
            **self.state(),
            "parts": parts,
            "sizes": sizes,
            "crcs": crcs,
            "retired": retired,
        }

    def finish_rewrite(self, state: dict[str, Any]) -> None:
        """Take the committed ``state`` of a rewrite, and remove the parts it retired."""
        self._parts = [str(n) for n in state["parts"]]
        self._sizes = {str(k): int(v) for k, v in state["sizes"].items()}
        self._crcs = {str(k): int(v) for k, v in state["crcs"].items()}
        for name in state.get("retired", []):
            if self._is_part(name) and name not in self._parts:
                (self.directory / name).unlink(missing_ok=True)
        fsync_dir(self.directory)

    def _filter_into(self, path: Path, keep: list[bool], target: Path) -> None:
        self.filter_part(path, target, keep)

    def _next_generation(self, name: str) -> str:
        """``part-00003.parquet`` -> ``part-00003.r1.parquet`` -> ``part-00003.r2.parquet``."""
        stem = name.removesuffix(self.suffix) if self.suffix else name
        base, dot, generation = stem.rpartition(".r")
        if dot and generation.isdigit():
            return f"{base}.r{int(generation) + 1}{self.suffix}"
        return f"{stem}.r1{self.suffix}"

    def set_aside(self) -> str | None:
        """Move the part files into ``<dir>.damaged-<time>/`` beside the directory (outside
        it, so that the dataset reads without them); return where."""
        parts = self._part_files()
        if not parts:
            return None
        return str(self._move_aside(parts, "damaged"))

    def write(self, records: list[Any], journal: bytes | None = None) -> dict[str, Any]:
        """Write ``records`` as the next part, durably; return the state to commit."""
        if records:
            name = f"{self.prefix}{len(self._parts):0{self.digits}d}{self.suffix}"
            crc = self._place(name, lambda target: self.write_part(target, records))
            self._parts.append(name)
            self._sizes[name] = (self.directory / name).stat().st_size
            self._crcs[name] = crc
        return self.state()

    def _place(self, name: str, write: Callable[[Path], None]) -> int:
        """Write a part with ``write`` under a temporary name, fsync it and link it to
        ``name`` (never over a file already there); return its CRC-32."""
        temporary = self.directory / f".{name}.tmp"
        write(temporary)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        crc = file_crc(temporary)
        try:  # a link never replaces a part already there (another writer's)
            os.link(temporary, self.directory / name)
        except FileExistsError:
            raise HeadraceError(
                f"{self.directory / name} appeared while this session was writing it: "
                "another process writes this directory; this session stops"
            ) from None
        finally:
            temporary.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return crc

    def close(self) -> None:
        """Nothing stays open between writes."""
        return None

    def for_shard(self, index: int) -> PartDirectorySink:
        """The sink of one shard of a run split across workers: parts in the same
        directory, named ``<prefix>s<index>-NNNNN<suffix>`` so that each shard keeps
        (and on a resume cleans) only its own; the directory is the whole output."""
        shard = copy.copy(self)
        shard.prefix = f"{self.prefix}s{index:05d}-"
        shard._parts, shard._sizes, shard._crcs = [], {}, {}
        return shard

    def clear_shards(self) -> None:
        """Nothing: a new run's :meth:`open` already removed every part of an earlier one."""
        return None

    def join_shards(self, count: int) -> None:
        """Nothing: the shards' parts are the directory's parts."""
        return None


def file_crc(path: Path) -> int:
    """The CRC-32 of a file's bytes."""
    crc = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def aside(path: Path, why: str) -> Path:
    """A free name beside ``path`` for output set aside: ``<name>.<why>-<time>``."""
    stem = f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = path.with_name(stem), 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{stem}-{n}")
    return target


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchDirSink(PartDirectorySink):
    """``batch_0000.jsonl``, ``batch_0001.jsonl``, ...: JSON Lines parts (:func:`write_batches`)."""

    kind = "batches"
    prefix = "batch_"
    suffix = ".jsonl"
    digits = 4

    def __init__(self, directory: str | os.PathLike[str], items_per_file: int = 1000) -> None:
        super().__init__(directory, items_per_file)

    def encode(self, key: str, value: Any) -> bytes:
        """The output as one line of JSON."""
        return encode_json(value) + b"\n"

    def write_part(self, path: Path, records: list[bytes]) -> None:
        """The lines, as they are."""
        with path.open("wb") as handle:
            handle.write(b"".join(records))

    def read_part(self, path: Path) -> list[Any]:
        """The part's lines, as JSON."""
        with path.open("rb") as handle:
            return [decode_json(line) for line in handle if line.strip()]

    def filter_part(self, path: Path, target: Path, keep: list[bool]) -> None:
        """The part's lines that ``keep`` marks."""
        with path.open("rb") as handle:
            lines = [line for line in handle if line.strip()]
        self.write_part(target, [line for line, kept in zip(lines, keep, strict=True) if kept])


def write_batches(directory: str | os.PathLike[str], *, items_per_file: int = 1000) -> BatchDirSink:
    """Write outputs as a directory of ``batch_NNNN.jsonl`` files, exactly once per item."""
    return BatchDirSink(directory, items_per_file)
