"""``headrace estimate``: what a run will cost and take on each tier, from a pilot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .recipes import _load_pipeline, _recipe
from .run_parts import _source_for, _with_tier

__all__ = ["estimate"]


@app.command()
def estimate(
    pipeline: Annotated[str, typer.Argument(help="a recipe (.yaml) or module:attribute")],
    input: Annotated[
        Path | None, typer.Option(help="the source (a recipe's own by default)")
    ] = None,
    key: Annotated[str | None, typer.Option(help="the field that identifies a record")] = None,
    sample: Annotated[int, typer.Option(help="items the pilot runs for real")] = 200,
    chunks: Annotated[int, typer.Option(help="groups the pilot runs in (the interval)")] = 10,
    seed: Annotated[int, typer.Option(help="the seed of the sample")] = 0,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="keep the estimate there (a recipe's: its run folder by default)"),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key.path=value, for a recipe")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="a package a recipe from elsewhere may import")
    ] = None,
    trusted: Annotated[bool, typer.Option(help="load a recipe from elsewhere as it is")] = False,
    tier: Annotated[
        str | None, typer.Option(help="a recipe's chat nodes' tier in the pilot's pipeline")
    ] = None,
) -> None:
    """Run a stratified sample of the source for real (or against `headrace sim`), then
    print the whole run's cost, wall time and requests on each tier, p10 / p50 / p90.
    Nothing of the run itself starts."""
    from ..errors import PipelineError
    from ..forecast import estimate as project

    is_recipe = pipeline.endswith((".yaml", ".yml"))
    if is_recipe:
        loaded = _recipe(
            pipeline, overrides=_with_tier(tier, True, set_), allow=allow, trusted=trusted
        )
        step = loaded.pipeline
        source = _source_for(input, key) if input is not None else loaded.source()
        run_dir = run_dir or loaded.default_run_dir()
    else:
        if set_ or tier or allow or trusted:
            raise typer.BadParameter("--set, --tier, --allow and --trusted are for recipes")
        if input is None:
            raise typer.BadParameter("a module:attribute pipeline needs --input")
        step = _load_pipeline(pipeline)
        source = _source_for(input, key)
    try:
        found = project(step, source, sample=sample, chunks=chunks, seed=seed, run_dir=run_dir)
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(found.summary())
    if run_dir is not None:
        typer.echo(
            f"kept in {run_dir / 'estimate.json'}: `headrace run --dry-run` shows it, and the "
            "run's report compares it with what the run cost and took"
        )
