"""``headrace cache``: look after the project's cache file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app

__all__ = ["cache_app"]

cache_app = typer.Typer(
    help="Look after the project's cache file (.headrace/cache.sqlite, or $HEADRACE_CACHE_DIR).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache")

CachePathOption = Annotated[
    Path | None,
    typer.Option("--path", help="the cache file (default: the project's)"),
]


def _cache_file(path: Path | None) -> Path:
    from ..cache import default_path

    found = path or default_path()
    if not found.exists():
        typer.echo(f"no cache file at {found}", err=True)
        raise typer.Exit(1)
    return found


@cache_app.command("stats")
def cache_stats(path: CachePathOption = None) -> None:
    """Entries and bytes per step, and how many are expired or stale."""
    from ..cache.manage import stats

    found = _cache_file(path)
    rows = stats(found)
    typer.echo(f"cache {found}")
    typer.echo(f"{'step':<32} {'entries':>9} {'bytes':>12} {'expired':>8} {'stale':>8}")
    for row in rows:
        typer.echo(
            f"{row.step:<32} {row.entries:>9,} {row.bytes:>12,} {row.expired:>8,} {row.stale:>8,}"
        )
    entries, size = sum(r.entries for r in rows), sum(r.bytes for r in rows)
    typer.echo(f"{'total':<32} {entries:>9,} {size:>12,}")


@cache_app.command("clear")
def cache_clear(
    step: Annotated[str | None, typer.Option(help="only this step's entries")] = None,
    path: CachePathOption = None,
) -> None:
    """Remove every entry, or one step's."""
    from ..cache.manage import clear

    removed = clear(_cache_file(path), step)
    typer.echo(f"removed {removed:,} entries")


@cache_app.command("prune")
def cache_prune(path: CachePathOption = None) -> None:
    """Remove expired entries, and those of step versions no longer in use."""
    from ..cache.manage import prune

    expired, stale = prune(_cache_file(path))
    typer.echo(f"removed {expired:,} expired and {stale:,} stale entries")
