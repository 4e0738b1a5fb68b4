"""Seeing a run: ``headrace report`` (one HTML file), ``headrace ui`` (a live page), and
the ``--ui`` and ``--metrics-port`` options of ``run`` and ``resume``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .app import RunStoreOption, app
from .status import _location

__all__ = ["MetricsPortOption", "UiOption", "live_page", "report", "ui"]

PortOption = Annotated[
    int, typer.Option(help="the live page's port (0: any free one)", min=0, max=65535)
]
HostOption = Annotated[
    str,
    typer.Option(help="the address the live page listens on (127.0.0.1: this machine only)"),
]


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    run_store: RunStoreOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="where to write it (default: RUN_DIR/report.html)"),
    ] = None,
) -> None:
    """Write a run's report, one self-contained HTML file that works offline (throughput
    against the limits, latency, the rate limit, cost, dead letters, what to change), and
    print its path. Works while the run goes on, after it, and after a resume."""
    from ..errors import HeadraceError
    from ..report.page import write_report

    where = _location(run_dir, run_store)
    target = output if output is not None else run_dir / "report.html"
    try:
        written = write_report(where, target)
    except HeadraceError as exc:  # a damaged store (a shard's included)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {target}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(written))


@app.command()
def ui(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    run_store: RunStoreOption = None,
    port: PortOption = 0,
    host: HostOption = "127.0.0.1",
) -> None:
    """Serve a run's live page (its report, refreshed every 1.5 s from its store) until
    Ctrl-C: for a run going on in another process or machine, or one that ended."""
    import time

    from ..report.live import LivePage

    where = _location(run_dir, run_store)
    page = LivePage(where, host=host, port=port)
    try:
        url = page.start()
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"live page of {where}: {url} (Ctrl-C stops it)")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    finally:
        page.stop()


@contextlib.contextmanager
def live_page(run_dir: Path, run_store: str | None, ui: bool) -> Iterator[None]:
    """With ``ui``: serve the run's live page while the command runs (``--ui``)."""
    if not ui:
        yield
        return
    from ..report.live import LivePage
    from ..store import StoreLocation

    page = LivePage(StoreLocation(run_dir, run_store))
    try:
        url = page.start()
    except OSError as exc:
        typer.echo(f"error: the live page cannot listen: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"live page: {url} (while this command runs; later: headrace ui {run_dir})", err=True
    )
    try:
        yield
    finally:
        page.stop()


MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        help="serve the run's metrics for Prometheus on http://127.0.0.1:PORT/metrics "
        "while it runs (needs headrace[metrics])",
        min=0,
        max=65535,
    ),
]

UiOption = Annotated[
    bool,
    typer.Option("--ui", help="serve a live page of the run on 127.0.0.1 (its URL is printed)"),
]
