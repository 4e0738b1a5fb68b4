"""A run already kept in a run directory, as the command line meets it: whether one is
there, and what it stored that ``headrace resume`` and ``retry-dead`` start it again from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .status import _open_store

__all__: list[str] = []


def _run_exists(run_dir: Path, run_store: str | None) -> bool:
    from ..store import StoreLocation

    try:
        return StoreLocation(run_dir, run_store).exists()
    except (ConnectionError, ValueError):
        return False  # the run itself reports an unreachable store


def _stored(run_dir: Path, run_store: str | None) -> tuple[str, Any, Any, dict[str, Any]]:
    from ..io import open_sink, open_source

    store = _open_store(run_dir, run_store)
    definition = store.definition() or {}
    store.close()
    ref = str(definition.get("pipeline", ""))
    if ":" not in ref:
        typer.echo(
            f"error: the run in {run_dir} was started from Python (pipeline {ref!r}); "
            "resume it from Python with hr.run(..., run_dir=..., resume=True)",
            err=True,
        )
        raise typer.Exit(1)
    try:
        source = open_source(definition["source"])
        sink = open_sink(definition["sink"])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    return ref, source, sink, dict(definition.get("options", {}))
