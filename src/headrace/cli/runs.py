"""Durable runs from the command line: ``run`` (and what carries a stored run on,
:mod:`headrace.cli.continuing`, calls its :func:`_carry_out`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import MissingExtra

if TYPE_CHECKING:
    from ..store.session import Mode

from .app import EXIT_DEAD, EXIT_STOPPED, MaxDeadOption, RunStoreOption, app
from .observe import MetricsPortOption, UiOption, live_page
from .recipes import (
    AllowOption,
    AllowPathOption,
    SetOption,
    TrustedOption,
    _is_recipe,
    _load_pipeline,
    _recipe,
)
from .run_parts import _backend, _sink_for, _source_for, _with_tier
from .stored_runs import _run_exists

__all__ = ["run"]


def _carry_out(
    pipeline_ref: str,
    source: Any,
    sink: Any,
    run_dir: Path,
    mode: Mode,
    force: bool,
    *,
    run_store: str | None = None,
    window: int | None = None,
    ordered: bool = False,
    on_bad_input: str = "dead_letter",
    duplicates: str = "error",
    overwrite: bool = False,
    rebuild_sink: bool = False,
    max_dead: str = "0",
    backend: Any = None,
    ui: bool = False,
    metrics_port: int | None = None,
    rerun: str | None = None,
    deadline: str | None = None,
) -> None:
    import asyncio

    from ..engine.result import dead_allowed
    from ..engine.runner import RunOptions, run_with
    from ..errors import HeadraceError
    from ..pipeline.step import as_step

    try:
        dead_allowed(max_dead, 0)
    except HeadraceError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-dead") from None
    if mode == "auto" and _run_exists(run_dir, run_store):
        typer.echo(
            f"resuming the run in {run_dir}: what it finished is not run again "
            "(--fresh starts over)",
            err=True,
        )

    recipe_options: dict[str, Any] = {}
    if pipeline_ref.startswith("recipe:"):  # a recipe run, stored as Recipe.ref
        recipe = _recipe(ref=pipeline_ref)
        root, recipe_options = recipe.pipeline, recipe.run_options()
    else:
        root = as_step(_load_pipeline(pipeline_ref), after=None)
    try:
        options = RunOptions.for_mode(
            mode,
            window=window or recipe_options.get("window"),
            ordered=ordered,
            on_error=recipe_options.get("on_error", "dead_letter"),
            budget=recipe_options.get("budget"),
            run_dir=run_dir,
            run_store=run_store,
            force=force,
            overwrite=overwrite,
            rebuild_sink=rebuild_sink,
            on_bad_input=on_bad_input,
            duplicates=duplicates,
            backend=recipe_options.get("backend") if backend is None else backend or None,
            metrics_port=metrics_port,
            rerun=rerun,
            deadline=deadline or recipe_options.get("deadline"),
        )
        with live_page(run_dir, run_store, ui):
            result = asyncio.run(
                run_with(root, source, sink=sink, options=options, pipeline_ref=pipeline_ref)
            )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finish it with: headrace resume {run_dir}", err=True)
        raise typer.Exit(130) from None
    except MissingExtra as exc:  # refused before anything was created
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (HeadraceError, ConnectionError) as exc:
        hint = (
            f"; finish it with: headrace resume {run_dir}" if getattr(exc, "resumable", 0) else ""
        )
        typer.echo(f"error: {exc}{hint}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.summary())
    if result.dead_letters:
        typer.echo(f"\n{result.items_dead:,} dead letters: {run_dir / 'dead.jsonl'}")
    if result.stopped:
        typer.echo(f"finish it with: headrace resume {run_dir}", err=True)
        raise typer.Exit(EXIT_STOPPED)
    if result.items_dead > dead_allowed(max_dead, result.items_in):
        typer.echo(
            f"failed: {result.items_dead:,} of {result.items_in:,} items are dead letters "
            f"(--max-dead {max_dead}); fix the cause, then: headrace retry-dead {run_dir}",
            err=True,
        )
        raise typer.Exit(EXIT_DEAD)


@app.command()
def run(
    pipeline: Annotated[
        str, typer.Argument(help="a recipe (.yaml), or a pipeline as module:attribute")
    ],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="a .jsonl, .csv or .parquet file, or a directory of files (a recipe's "
            "source: by default)",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="a .jsonl or .csv file, a .parquet directory, a directory of batch files, "
            "or a database URL (sqlite:///x.db, postgresql://...) with --table (a recipe's "
            "sink: by default)",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="where the run store lives (a recipe's default: .headrace/<name>)"),
    ] = None,
    key: Annotated[str | None, typer.Option(help="the field that identifies a record")] = None,
    table: Annotated[str | None, typer.Option(help="the table of a database --output")] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option(
            "--columns",
            help="the columns of a .csv, .parquet or database --output, each as name=type, "
            "every one named as a recipe's columns: (--columns id=int64 --columns "
            "embedding=list<float64>; default: fixed by the first output)",
        ),
    ] = None,
    run_store: RunStoreOption = None,
    window: Annotated[int | None, typer.Option(help="items in flight at most")] = None,
    ordered: Annotated[bool, typer.Option(help="write outputs in input order")] = False,
    stop_on_bad_input: Annotated[
        bool, typer.Option(help="stop at the first unreadable record")
    ] = False,
    duplicates: Annotated[
        str,
        typer.Option(
            help="a repeated key: 'error' (a dead letter), 'first' (drop it), "
            "'suffix' (keep it as key#2)"
        ),
    ] = "error",
    set_: SetOption = None,
    allow: AllowOption = None,
    allow_path: AllowPathOption = None,
    trusted: TrustedOption = False,
    dry_run: Annotated[
        bool, typer.Option(help="print a recipe's plan and estimated calls and cost; run nothing")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="replace output already at --output (refused without it)")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            help="discard the run in the run directory, and its output, and start again "
            "(without it, a run found there is resumed)"
        ),
    ] = False,
    max_dead: MaxDeadOption = "0",
    backend: Annotated[
        str | None,
        typer.Option(
            help="where the items run: 'local' (this process) or 'ray' (workers of a Ray "
            "cluster; a recipe's run.backend by default)"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="with --backend ray: worker actors (default 2)")
    ] = None,
    shard_size: Annotated[
        int | None, typer.Option(help="with --backend ray: items a shard holds")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="with --backend ray: the cluster to join ('auto'; default: local)"),
    ] = None,
    num_gpus: Annotated[
        float | None,
        typer.Option(help="with --backend ray: GPUs Ray reserves for each worker (default 0)"),
    ] = None,
    ui: UiOption = False,
    metrics_port: MetricsPortOption = None,
    tier: Annotated[
        str | None,
        typer.Option(
            help="the tier of a recipe's chat LLM nodes: 'online', 'flex' (slower, cheaper), "
            "'batch' (half the price, answered within a day) or 'auto' (the cheapest that "
            "meets --deadline; --set run.tier=...)"
        ),
    ] = None,
    deadline: Annotated[
        str | None,
        typer.Option(help="when the results are needed, from now ('6h'): tier auto meets it"),
    ] = None,
) -> None:
    """Run a recipe or a pipeline over a file, durably: kill it at any moment, then run
    the same command again (or `headrace resume DIR`) to finish it; --fresh starts over.
    A recipe's run: section sets the window, order and error handling (change them with
    --set run.concurrency=16)."""
    chosen = _backend(backend, workers, shard_size, ray_address, num_gpus)
    set_ = _with_tier(tier, _is_recipe(pipeline), set_)
    if deadline is not None and _is_recipe(pipeline):
        set_, deadline = [*(set_ or []), f"run.deadline={deadline}"], None
    if _is_recipe(pipeline):
        given = [
            flag
            for flag, value in (
                ("--window", window is not None),
                ("--ordered", ordered),
                ("--stop-on-bad-input", stop_on_bad_input),
                ("--duplicates", duplicates != "error"),
            )
            if value
        ]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)}: a recipe sets these in its run: section; "
                "use --set run.concurrency=..., run.ordered=..., run.on_bad_input=..., "
                "run.duplicates=...",
                param_hint="PIPELINE",
            )
        recipe = _recipe(
            pipeline, overrides=set_, allow=allow, allow_paths=allow_path, trusted=trusted
        )
        if dry_run:
            replaced = _source_for(input, key) if input is not None else None
            typer.echo(
                recipe.plan(
                    source=replaced,
                    source_text=f"--input {input}" if input is not None else None,
                    sink_text=f"--output {output}" if output is not None else None,
                )
            )
            return
        from ..recipe import RecipeError

        try:
            source = _source_for(input, key) if input is not None else recipe.source()
            if columns and output is None:
                raise typer.BadParameter(
                    "--columns goes with --output (a recipe's sink has its own columns:)",
                    param_hint="--columns",
                )
            sink = _sink_for(output, table, key, columns) if output is not None else recipe.sink()
        except RecipeError as exc:
            typer.echo(f"{exc} (or give --input/--output)", err=True)
            raise typer.Exit(1) from None
        options = recipe.spec.run
        _carry_out(
            recipe.ref,
            source,
            sink,
            run_dir or recipe.default_run_dir(),
            "fresh" if fresh else "auto",
            False,
            run_store=run_store,
            ordered=options.ordered,
            on_bad_input=options.on_bad_input,
            duplicates=options.duplicates,
            overwrite=overwrite,
            max_dead=max_dead,
            backend=chosen,
            ui=ui,
            metrics_port=metrics_port,
        )
        return
    if set_ or allow or allow_path or trusted or dry_run:
        raise typer.BadParameter(
            "--set, --allow, --allow-path, --trusted and --dry-run are for recipes (.yaml)"
        )
    missing = [
        flag
        for flag, value in (("--input", input), ("--output", output), ("--run-dir", run_dir))
        if value is None
    ]
    if missing:
        raise typer.BadParameter(
            f"running module:attribute needs {', '.join(missing)}", param_hint="PIPELINE"
        )
    assert input is not None and output is not None and run_dir is not None
    _carry_out(
        pipeline,
        _source_for(input, key),
        _sink_for(output, table, key, columns),
        run_dir,
        "fresh" if fresh else "auto",
        False,
        run_store=run_store,
        window=window,
        ordered=ordered,
        on_bad_input="stop" if stop_on_bad_input else "dead_letter",
        duplicates=duplicates,
        overwrite=overwrite,
        max_dead=max_dead,
        backend=chosen,
        ui=ui,
        metrics_port=metrics_port,
        deadline=deadline,
    )
