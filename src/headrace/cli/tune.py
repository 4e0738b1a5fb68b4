"""Measuring a pipeline on a sample: ``headrace profile`` and ``headrace bench``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .recipes import (
    AllowOption,
    AllowPathOption,
    SetOption,
    TrustedOption,
    _is_recipe,
    _load_pipeline,
    _recipe,
)
from .run_parts import _source_for

__all__ = ["bench", "profile"]

PipelineArgument = Annotated[
    str, typer.Argument(help="a recipe (.yaml), or a pipeline as module:attribute")
]
InputOption = Annotated[
    Path | None,
    typer.Option(
        "--input",
        "-i",
        help="a .jsonl, .csv or .parquet file, or a directory (a recipe's source: by default)",
    ),
]
KeyOption = Annotated[str | None, typer.Option(help="the field that identifies a record")]
SimOption = Annotated[
    str | None,
    typer.Option(
        help="call a headrace sim with these settings instead of the LLM steps' endpoints, "
        "e.g. rpm=6000,latency_ms=150 (any headrace sim setting, fault_503=0.05 for a fault)"
    ),
]


def _sample(
    pipeline: str,
    input: Path | None,
    key: str | None,
    limit: int,
    recipe_flags: tuple[list[str] | None, list[str] | None, list[Path] | None, bool],
) -> tuple[Any, Any]:
    """The pipeline (loaded for this command alone) and the first ``limit`` records."""
    from ..io.records import Head
    from ..pipeline.step import as_step

    set_, allow, allow_path, trusted = recipe_flags
    if _is_recipe(pipeline):
        recipe = _recipe(
            pipeline, overrides=set_, allow=allow, allow_paths=allow_path, trusted=trusted
        )
        root = recipe.pipeline
        if input is not None:
            source = _source_for(input, key)
        else:
            from ..recipe import RecipeError

            try:
                source = recipe.source()
            except RecipeError as exc:
                typer.echo(f"{exc} (or give --input)", err=True)
                raise typer.Exit(1) from None
    else:
        if set_ or allow or allow_path or trusted:
            raise typer.BadParameter(
                "--set, --allow, --allow-path and --trusted are for recipes (.yaml)"
            )
        if input is None:
            raise typer.BadParameter(
                "a module:attribute pipeline needs --input", param_hint="--input"
            )
        root = as_step(_load_pipeline(pipeline), after=None)
        source = _source_for(input, key)
    return root, Head(source, limit)


def _sim(text: str | None) -> Any:
    from ..sim import SimConfig

    if text is None:
        return None
    try:
        return SimConfig.from_text(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sim") from None


@app.command()
def profile(
    pipeline: PipelineArgument,
    input: InputOption = None,
    key: KeyOption = None,
    limit: Annotated[int, typer.Option(help="records to run (the first ones)", min=1)] = 2_000,
    run_dir: Annotated[
        Path, typer.Option(help="where the run, its output and the profile go (started afresh)")
    ] = Path("headrace-profile"),
    sim: SimOption = None,
    interval_ms: Annotated[
        float, typer.Option(help="milliseconds between samples of the stacks", min=0.5)
    ] = 5.0,
    set_: SetOption = None,
    allow: AllowOption = None,
    allow_path: AllowPathOption = None,
    trusted: TrustedOption = False,
) -> None:
    """Run a sample durably while sampling every thread's stack; print where the time
    went (each step's own code, headrace's parts, waiting) and write a flame graph
    (profile.svg, and profile.speedscope.json for speedscope) into --run-dir."""
    from ..errors import HeadraceError
    from ..tune.profile import profile_run

    root, source = _sample(pipeline, input, key, limit, (set_, allow, allow_path, trusted))
    try:
        done = profile_run(
            root, source, run_dir, interval_s=interval_ms / 1e3, sim=_sim(sim), title=pipeline
        )
    except (HeadraceError, ConnectionError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    result = done.result
    typer.echo(
        f"headrace profile: {result.items_in:,} items in {result.metrics.wall_s:.2f} s "
        f"({result.metrics.items_per_s:,.0f} items/s), {done.profile.ticks:,} samples "
        f"every {interval_ms:g} ms"
    )
    typer.echo(done.profile.table())
    if done.measured():
        typer.echo(done.measured())
    processes = [s.name for s in result.metrics.steps if s.executor == "process"]
    if processes:
        typer.echo(
            f"(steps on the process executor ({', '.join(processes)}) run in other processes: "
            "their time is waiting above, and their busy time is in the summary)"
        )
    typer.echo(f"\n{result.summary()}\n")
    for path in done.files:
        typer.echo(f"written: {path}")


@app.command()
def bench(
    pipeline: PipelineArgument,
    sweep: Annotated[
        str,
        typer.Option(
            help="KNOB=V1,V2,...: concurrency, batch, pack or window, and the values to try"
        ),
    ],
    input: InputOption = None,
    key: KeyOption = None,
    limit: Annotated[
        int, typer.Option(help="records each point runs (the first ones)", min=1)
    ] = 500,
    step: Annotated[
        list[str] | None,
        typer.Option(
            help="the step whose setting is swept (repeatable; default: the LLM steps that "
            "have it, else every step that has it)"
        ),
    ] = None,
    sim: SimOption = None,
    window: Annotated[
        int | None, typer.Option(help="items in flight (when not swept)", min=1)
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            help="the most the whole sweep may spend on a real endpoint, shared evenly "
            "by the points",
            min=0,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="where bench.json and report.html go")] = Path(
        "headrace-bench"
    ),
    repeats: Annotated[
        int,
        typer.Option(
            help="runs of each value, interleaved (a point is their median, with their "
            "spread); the knee is named only outside the noise",
            min=1,
        ),
    ] = 3,
    set_: SetOption = None,
    allow: AllowOption = None,
    allow_path: AllowPathOption = None,
    trusted: TrustedOption = False,
) -> None:
    """Run a sample --repeats times per value of one setting (steps' caches off), print
    a table of throughput (with its spread), latency, 429s, cost and the step that set
    the pace, name the knee (the smallest value within 10% of the best throughput, when
    it stands out of the noise), and write bench.json and a report with the plots."""
    from ..errors import HeadraceError
    from ..tune.bench import bench as sweep_over
    from ..tune.knobs import Sweep

    try:
        chosen = Sweep.parse(sweep)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sweep") from None
    config = _sim(sim)
    root, source = _sample(pipeline, input, key, limit, (set_, allow, allow_path, trusted))
    typer.echo(
        f"{chosen.knob}: {', '.join(map(str, chosen.values))} ({limit:,} records a point at "
        f"most, {repeats} run(s) each)"
    )

    def shown(point: Any) -> None:
        typer.echo(
            f"  {chosen.knob}={point.value}: {point.items_per_s:,.1f} items/s "
            f"({point.lowest:,.1f}-{point.highest:,.1f})",
            err=True,
        )

    try:
        result = asyncio.run(
            sweep_over(
                root,
                source,
                chosen,
                steps=step,
                sim=config,
                window=window,
                budget_usd=budget_usd,
                on_point=shown,
                repeats=repeats,
            )
        )
    except (HeadraceError, ConnectionError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.table())
    typer.echo(result.verdict())
    try:
        data, page = result.write(out, pipeline)
    except OSError as exc:
        typer.echo(f"error: cannot write into {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"written: {data}\nwritten: {page}")
