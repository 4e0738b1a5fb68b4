"""A directory of ``batch_NNNN.jsonl`` files, each written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["BatchDirSink", "write_batches"]


class BatchDirSink:
    """Writes outputs as ``batch_0000.jsonl``, ``batch_0001.jsonl``, ... in a directory.

    Each file is written to a hidden temporary name, fsynced and renamed, and only
    then recorded in the run store; a resume deletes any batch file the store
    does not list (written but not committed when the run was killed) and any
    temporary file, so the directory holds each item once.

    Args:
        directory: where the files go.
        items_per_file: the writer commits a file after this many finished items
            (dead and filtered ones count too), or after 2 seconds with fewer, so a
            kill loses at most that much work; a file holds about this many lines.
    """

    flush_interval_s = 2.0

    def __init__(self, directory: str | os.PathLike[str], items_per_file: int = 1000) -> None:
        if (
            isinstance(items_per_file, bool)
            or not isinstance(items_per_file, int)
            or (items_per_file < 1)
        ):
            raise ValueError(f"items_per_file must be a positive integer, got {items_per_file!r}")
        self.directory = Path(directory)
        self.items_per_file = items_per_file
        self.flush_items = items_per_file
        self._parts: list[str] = []

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {
            "kind": "batches",
            "path": str(self.directory.resolve()),
            "items_per_file": self.items_per_file,
        }

    def open(self, state: dict[str, Any]) -> None:
        """Remove every file that the committed ``state`` does not list."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._parts = list(state.get("parts", []))
        committed = set(self._parts)
        for path in self.directory.iterdir():
            torn = path.name.startswith(".batch_") and path.name.endswith(".tmp")
            stray = path.name.startswith("batch_") and path.name not in committed
            if torn or stray:
                path.unlink()

    def write(self, lines: list[bytes]) -> dict[str, Any]:
        """Write ``lines`` as the next batch file, durably; return the state to commit."""
        if lines:
            name = f"batch_{len(self._parts):04d}.jsonl"
            temporary = self.directory / f".{name}.tmp"
            with temporary.open("wb") as handle:
                handle.write(b"\n".join(lines) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.directory / name)
            _fsync_dir(self.directory)
            self._parts.append(name)
        return {"parts": list(self._parts)}

    def close(self) -> None:
        """Nothing stays open between writes."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_batches(directory: str | os.PathLike[str], *, items_per_file: int = 1000) -> BatchDirSink:
    """Write outputs as a directory of ``batch_NNNN.jsonl`` files, exactly once per item."""
    return BatchDirSink(directory, items_per_file)
