"""A directory of files as a source: one item per file, keyed by its relative path."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from .records import BadRecord, Source

__all__ = ["DirectorySource", "read_dir"]


class DirectorySource(Source):
    """One ``{"path": ..., "text": ...}`` (or ``"data"``: bytes) per file (:func:`read_dir`)."""

    def __init__(
        self, directory: str | os.PathLike[str], pattern: str, recursive: bool, binary: bool
    ) -> None:
        self.directory = Path(directory)
        self.pattern = pattern
        self.recursive = recursive
        self.binary = binary

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "directory",
            "path": str(self.directory.resolve()),
            "pattern": self.pattern,
            "recursive": self.recursive,
            "binary": self.binary,
        }

    @property
    def keys_unique(self) -> bool:
        """Paths do not repeat."""
        return True

    def check(self) -> None:
        """Refuse a path that is not a directory."""
        if not self.directory.is_dir():
            raise FileNotFoundError(f"cannot read {self.directory}: not a directory")

    def _files(self, directory: Path) -> Iterator[Path]:
        # sorted one directory at a time: a stable order in memory bounded by the widest folder
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if self.recursive:
                    yield from self._files(Path(entry.path))
            elif entry.is_file() and fnmatch.fnmatchcase(entry.name, self.pattern):
                yield Path(entry.path)

    def count(self) -> int:
        """The number of matching files (a listing; nothing is read)."""
        self.check()
        return sum(1 for _ in self._files(self.directory))

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        return self.records_between(0, None)

    def records_between(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The files at positions ``start`` to ``stop`` (excluded; ``None``: to the end)
        of the sorted listing; only those files are read."""
        self.check()
        home = self.directory.resolve()
        chosen = islice(self._files(self.directory), start, stop)
        for path in chosen:
            relative = path.relative_to(self.directory).as_posix()
            self.place = str(path)
            if path.is_symlink() and not path.resolve().is_relative_to(home):
                yield BadRecord(
                    str(path),
                    "a link to a file outside the directory; a directory source reads only "
                    "the files inside it",
                )
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield BadRecord(str(path), f"cannot read: {exc.strerror}")
                continue
            if self.binary:
                yield relative, {"path": relative, "data": data}
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRecord(
                    str(path), f"not UTF-8 text (byte {exc.start}); read it with binary=True"
                )
                continue
            yield relative, {"path": relative, "text": text}


def read_dir(
    directory: str | os.PathLike[str],
    *,
    pattern: str = "*",
    recursive: bool = True,
    binary: bool = False,
) -> DirectorySource:
    """Read every file of a directory, one item per file, in a stable (sorted) order.

    Args:
        directory: the directory.
        pattern: only files whose name matches this glob (e.g. ``"*.txt"``).
        recursive: go into subdirectories.
        binary: give the bytes as ``"data"`` instead of the UTF-8 text as ``"text"``.

    Each item is ``{"path": <path relative to directory>, "text": <content>}``
    and its key is that relative path. A file that is not UTF-8 (without
    ``binary``), cannot be read, or is a symbolic link to a file outside the
    directory (never followed there) is a :class:`BadRecord` naming it.
    """
    return DirectorySource(directory, pattern, recursive, binary)
