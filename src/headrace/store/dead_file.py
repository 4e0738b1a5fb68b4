"""A run's ``dead.jsonl``: every dead letter of the run, one JSON object a line, written
from its store (a shard's numbered from the shard's start) and replaced atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.records import encode_json
from .run_store import FinishedItem, RunStore

__all__ = ["dead_row", "write_dead_file", "write_dead_from_store"]


def write_dead_from_store(store: RunStore, path: Path) -> None:
    """All dead letters of the run, from its store."""
    write_dead_file((dead_row(dead) for dead in store.iter_dead_letters()), path)


def dead_row(dead: FinishedItem, offset: int = 0) -> dict[str, Any]:
    """A dead letter as a line of ``dead.jsonl``; ``offset`` is added to its index (a
    shard's items are numbered from its start)."""
    return {
        "index": dead.index + offset,
        "key": dead.key,
        "step": dead.step,
        "error_type": dead.error_type,
        "message": dead.message,
        "attempts": dead.attempts,
        "item": dead.decoded_item(),
    }


def write_dead_file(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Dead letters, one JSON object a line, replacing ``path`` atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        for row in rows:
            handle.write(encode_json(row) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
