"""The ``headrace`` application: its options shared by commands, exit statuses and
the root callback (``--version``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__

__all__ = ["EXIT_DEAD", "EXIT_STOPPED", "MaxDeadOption", "RunStoreOption", "app"]

RunStoreOption = Annotated[
    str | None,
    typer.Option(
        "--run-store",
        help="keep the run store in PostgreSQL (postgresql://...), named after the run "
        "directory, instead of run.sqlite in it",
    ),
]

MaxDeadOption = Annotated[
    str,
    typer.Option(
        "--max-dead",
        help="dead letters allowed before the command exits 3: a count (10) or a share "
        "of the items read (1%); default 0",
    ),
]

EXIT_DEAD = 3
"""The exit status of a run that ended with more dead letters than ``--max-dead``."""
EXIT_STOPPED = 4
"""The exit status of a run that stopped early, resumable (a spent budget, a provider down)."""

app = typer.Typer(
    name="headrace",
    help="Push large datasets through pipelines of AI and data steps, without losing work.",
    no_args_is_help=True,
    add_completion=False,
    # plain help wraps option names at any width; the Rich panels cut them at 80 columns
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"headrace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """headrace: pipelines at the speed of the real limit."""
