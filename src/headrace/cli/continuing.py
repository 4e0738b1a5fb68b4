"""Carrying a stored run on from the command line: ``resume``, ``retry-dead`` and
``rerun``, each with the options the run was started with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..store.session import Mode

from .app import MaxDeadOption, RunStoreOption, app
from .observe import MetricsPortOption, UiOption
from .recipes import SetOption, _recipe
from .run_parts import _stored_backend
from .runs import _carry_out
from .stored_runs import _stored

__all__ = ["rerun", "resume", "retry_dead"]


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    force: Annotated[
        bool, typer.Option(help="resume even though the pipeline changed (recorded)")
    ] = False,
    run_store: RunStoreOption = None,
    rebuild_sink: Annotated[
        bool,
        typer.Option(
            help="the sink lost committed output: set it aside and compute those items again"
        ),
    ] = False,
    max_dead: MaxDeadOption = "0",
    ui: UiOption = False,
    metrics_port: MetricsPortOption = None,
) -> None:
    """Finish an interrupted run: nothing finished is computed or written again."""
    _continue_stored(
        run_dir,
        "resume",
        force,
        run_store,
        rebuild_sink=rebuild_sink,
        max_dead=max_dead,
        ui=ui,
        metrics_port=metrics_port,
    )


@app.command("retry-dead")
def retry_dead(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    force: Annotated[
        bool, typer.Option(help="retry even though the pipeline changed (recorded)")
    ] = False,
    run_store: RunStoreOption = None,
    max_dead: MaxDeadOption = "0",
) -> None:
    """Run only the dead letters of a run again (after a fix)."""
    _continue_stored(run_dir, "retry_dead", force, run_store, max_dead=max_dead)


def _continue_stored(
    run_dir: Path,
    mode: Mode,
    force: bool,
    run_store: str | None,
    *,
    rebuild_sink: bool = False,
    max_dead: str = "0",
    ui: bool = False,
    metrics_port: int | None = None,
    rerun: str | None = None,
    settings: list[str] | None = None,
) -> None:
    """Resume a stored run, retry its dead letters, or rerun the items ``rerun`` chooses
    (with more recipe ``settings``), with the options it was started with."""
    ref, source, sink, options = _stored(run_dir, run_store)
    if settings:
        ref = _with_settings(ref, settings)
    _carry_out(
        ref,
        source,
        sink,
        run_dir,
        mode,
        force,
        run_store=run_store,
        ordered=bool(options.get("ordered")),
        on_bad_input=str(options.get("on_bad_input", "dead_letter")),
        duplicates=str(options.get("duplicates", "error")),
        rebuild_sink=rebuild_sink,
        max_dead=max_dead,
        backend=_stored_backend(options.get("backend")),
        ui=ui,
        metrics_port=metrics_port,
        rerun=rerun,
    )


@app.command()
def rerun(
    run_dir: Annotated[
        Path, typer.Argument(help="the run directory, or a recipe (its run in .headrace/NAME)")
    ],
    where: Annotated[
        str,
        typer.Option(
            "--where",
            help="a condition on each stored output's fields, or a dead letter's "
            '(status, step, error_type, message): "confidence < 0.5"',
        ),
    ],
    set_: SetOption = None,
    run_store: RunStoreOption = None,
    max_dead: MaxDeadOption = "0",
) -> None:
    """Run again only the items whose stored output or dead letter matches --where,
    with changed settings (--set, for a recipe): each new answer replaces the old."""
    if run_dir.suffix in (".yaml", ".yml") and run_dir.is_file():
        run_dir = _recipe(str(run_dir)).default_run_dir()
    _continue_stored(
        run_dir, "resume", False, run_store, max_dead=max_dead, rerun=where, settings=set_
    )


def _with_settings(ref: str, settings: list[str]) -> str:
    """A stored recipe reference with more ``--set`` settings (later ones win)."""
    stored = None
    if ref.startswith("recipe:"):
        try:
            stored = json.loads(ref.removeprefix("recipe:"))
        except ValueError:
            stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("set", []), list):
        raise typer.BadParameter(
            "--set changes a recipe's settings; this run was not started from a readable "
            "recipe (rerun a Python pipeline with hr.rerun)",
            param_hint="--set",
        )
    stored["set"] = [*stored.get("set", []), *settings]
    return "recipe:" + json.dumps(stored, sort_keys=True)
