"""The ``headrace`` command line.

Heavy libraries are never imported at start-up: ``headrace --version`` and
``headrace info`` stay fast however many extras are installed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
from typing import Annotated

import typer

from . import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="headrace",
    help="Push large datasets through pipelines of AI and data steps, without losing work.",
    no_args_is_help=True,
    add_completion=False,
)

OPTIONAL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "local models": ("torch", "sentence_transformers", "transformers", "vaderSentiment"),
    "http / llm": ("aiohttp",),
    "sql": ("sqlalchemy", "psycopg"),
    "redis": ("redis",),
    "parquet": ("pyarrow",),
    "ray": ("ray",),
}
"""Libraries that optional parts of headrace use, grouped by the part that uses them."""


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


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gpus() -> str:
    """Name the GPUs seen, without importing torch (which takes seconds)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none seen (no nvidia-smi)"
    try:
        found = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "none seen (nvidia-smi failed)"
    names = [line.strip() for line in found if line.strip()]
    return ", ".join(names) if names else "none seen"


@app.command()
def info() -> None:
    """Show the version, Python, the CPUs and GPUs seen, and which optional libraries are found."""
    typer.echo(f"headrace {__version__}")
    typer.echo(f"python   {platform.python_version()} ({platform.python_implementation()})")
    typer.echo(f"platform {platform.platform()}")
    typer.echo(f"cpus     {os.cpu_count()}")
    typer.echo(f"gpus     {_gpus()}")
    typer.echo("optional libraries:")
    for part, modules in OPTIONAL_LIBRARIES.items():
        missing = [m for m in modules if not _installed(m)]
        state = "found" if not missing else f"missing {', '.join(missing)}"
        typer.echo(f"  {part:<13} {state}")


def main() -> None:
    """Entry point of the ``headrace`` console script."""
    app()
