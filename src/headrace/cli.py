"""The ``headrace`` command line.

Heavy libraries are never imported at start-up: ``headrace --version`` and
``headrace info`` stay fast however many extras are installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import __version__
from .sim.config import FAULTS

if TYPE_CHECKING:
    from .durable import Mode
    from .store import RunStore

__all__ = ["app", "main"]

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
)

OPTIONAL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "local models": ("torch", "sentence_transformers", "transformers", "vaderSentiment"),
    "http / llm": ("aiohttp",),
    "postgresql": ("psycopg",),
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
    typer.echo("  (SQLite, the run store and SQL sinks' default, is part of Python)")


def _load_pipeline(ref: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable)."""
    from .errors import PipelineError
    from .imports import import_object

    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {ref!r}", param_hint="PIPELINE")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_object(module_name, attribute, private=True)
    except PipelineError as exc:
        raise typer.BadParameter(f"cannot load {ref}: {exc}", param_hint="PIPELINE") from None


def _recipe(
    path: str | None = None,
    *,
    ref: str | None = None,
    overrides: list[str] | None = None,
    allow: list[str] | None = None,
    allow_paths: list[Path] | None = None,
    trusted: bool = False,
) -> Any:
    """Load a recipe (from its file, or from a stored run's ref), or exit with its problems.

    A recipe file outside the current directory (a downloaded one) is loaded only
    with ``--allow`` (the packages it may import) or ``--trusted``: its import paths
    could otherwise name any function, ``os:system`` included.
    """
    from .recipe import Recipe, RecipeError

    if path is not None and not allow and not trusted:
        where = Path(path).resolve()
        if not where.is_relative_to(Path.cwd().resolve()):
            typer.echo(
                f"error: {path} is outside this project (the current directory), and a "
                "recipe can name any function to run; give --allow PACKAGE for each package "
                "it may import, or --trusted if you trust it",
                err=True,
            )
            raise typer.Exit(1)
    try:
        if ref is not None:
            return Recipe.from_ref(ref)
        return Recipe(
            path or "",
            overrides=overrides or (),
            allow=allow or None,
            allow_paths=allow_paths or (),
        )
    except RecipeError as exc:
        typer.echo(str(exc), err=True)
        count = len(exc.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''}; nothing ran", err=True)
        raise typer.Exit(1) from None


def _is_recipe(pipeline: str) -> bool:
    return pipeline.endswith((".yaml", ".yml"))


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a recipe value: --set run.concurrency=16 (repeatable)"),
]
AllowOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow", help="import only modules under this prefix (repeatable; default: any)"
    ),
]
TrustedOption = Annotated[
    bool,
    typer.Option(
        help="run a recipe from outside the current directory without --allow (it may "
        "import and run any function)"
    ),
]
AllowPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--allow-path",
        help="a folder outside the recipe's own that its source and sink may name (repeatable)",
    ),
]


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="the recipe file")],
    set_: SetOption = None,
    allow: AllowOption = None,
    allow_path: AllowPathOption = None,
    trusted: TrustedOption = False,
) -> None:
    """Check a recipe without running it: every problem names file:line:column and the field."""
    loaded = _recipe(
        str(recipe), overrides=set_, allow=allow, allow_paths=allow_path, trusted=trusted
    )
    graph = loaded.built.graph
    edges = len(graph.edges)
    typer.echo(
        f"{recipe}: ok, recipe {loaded.name!r}: {len(graph.nodes)} nodes, {edges} edges, "
        f"fingerprint {loaded.pipeline.fingerprint[:12]}"
    )


def _sink_for(output: str, table: str | None, key: str | None) -> Any:
    """The sink an ``--output`` names (see :func:`headrace.io.sink_at`)."""
    from .io import sink_at

    try:
        return sink_at(output, table=table, key=key)
    except ValueError as exc:
        hint = "--output" if table is None else "--table"
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _source_for(path: Path, key: str | None) -> Any:
    """The source an ``--input`` names, by its suffix, or a directory of files."""
    from .io import source_at

    try:
        return source_at(path, key=key)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input") from None


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
) -> None:
    import asyncio

    from .errors import HeadraceError
    from .result import dead_allowed
    from .runner import default_window, execute
    from .step import as_step

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
        result = asyncio.run(
            execute(
                root,
                source,
                sink=sink,
                window=window or recipe_options.get("window") or default_window(root),
                ordered=ordered,
                on_error=recipe_options.get("on_error", "dead_letter"),
                budget=recipe_options.get("budget"),
                progress=True,
                run_dir=run_dir,
                run_store=run_store,
                mode=mode,
                force=force,
                overwrite=overwrite,
                rebuild_sink=rebuild_sink,
                key=None,
                on_bad_input=on_bad_input,  # type: ignore[arg-type]
                pipeline_ref=pipeline_ref,
                duplicates=duplicates,  # type: ignore[arg-type]
            )
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finish it with: headrace resume {run_dir}", err=True)
        raise typer.Exit(130) from None
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
) -> None:
    """Run a recipe or a pipeline over a file, durably: kill it at any moment, then run
    the same command again (or `headrace resume DIR`) to finish it; --fresh starts over.
    A recipe's run: section sets the window, order and error handling (change them with
    --set run.concurrency=16)."""
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
            typer.echo(recipe.plan())
            return
        from .recipe import RecipeError

        try:
            source = _source_for(input, key) if input is not None else recipe.source()
            sink = _sink_for(output, table, key) if output is not None else recipe.sink()
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
        _sink_for(output, table, key),
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
    )


def _run_exists(run_dir: Path, run_store: str | None) -> bool:
    from .store import StoreLocation

    try:
        return StoreLocation(run_dir, run_store).exists()
    except (ConnectionError, ValueError):
        return False  # the run itself reports an unreachable store


def _open_store(run_dir: Path, run_store: str | None) -> RunStore:
    """The store of the run in ``run_dir`` (or named after it in ``run_store``), or exit."""
    from .store import StoreLocation

    where = StoreLocation(run_dir, run_store)
    try:
        if where.exists():
            return where.open()
    except (ConnectionError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"error: there is no run in {where}", err=True)
    raise typer.Exit(1)


def _stored(run_dir: Path, run_store: str | None) -> tuple[str, Any, Any, dict[str, Any]]:
    from .io import open_sink, open_source

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
) -> None:
    """Finish an interrupted run: nothing finished is computed or written again."""
    _continue_stored(
        run_dir, "resume", force, run_store, rebuild_sink=rebuild_sink, max_dead=max_dead
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
) -> None:
    """Resume a stored run, or retry its dead letters, with the options it was started with."""
    ref, source, sink, options = _stored(run_dir, run_store)
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
    )


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    run_store: RunStoreOption = None,
) -> None:
    """Show a run's progress (works while it runs): done, dead, pending, rate, last errors."""
    import time

    store = _open_store(run_dir, run_store)
    try:
        state = store.status()
        lease = store.lease()
        forced = store.forced_sessions()
    finally:
        store.close()
    definition = state.definition
    typer.echo(f"run       {run_dir}")
    typer.echo(f"pipeline  {_pipeline_words(definition.get('pipeline'))}")
    typer.echo(f"source    {_where(definition.get('source', {}))}")
    typer.echo(f"sink      {_where(definition.get('sink', {}))}")
    typer.echo(
        f"finished  {state.finished:,}: done {state.done:,}, dead {state.dead:,}, "
        f"filtered {state.filtered:,}"
        + (f", repeated keys dropped {state.duplicate:,}" if state.duplicate else "")
    )
    if state.pending is None:
        typer.echo("pending   unknown until the source has been read to its end once")
    else:
        typer.echo(f"pending   {state.pending:,} of {state.total:,}")
    elapsed = max(state.updated - state.created, 1e-9)
    typer.echo(
        f"sessions  {state.sessions} (started {time.ctime(state.created)}, last commit "
        f"{time.ctime(state.updated)}, {state.finished / elapsed:,.1f} items/s overall)"
    )
    if lease is None:
        typer.echo("running   no: no session holds the run")
    elif lease.alive():
        typer.echo(f"running   yes: {lease.describe()}")
    else:
        typer.echo(f"running   no: {lease.describe()} (dead; the next session takes over)")
    for session, note in forced:
        typer.echo(f"forced    session {session}: {note or 'forced'}")
    for error in state.last_errors:
        typer.echo(
            f"dead in {error.step}: {error.count:,}; last: {error.error_type}: {error.message}"
        )


def _pipeline_words(ref: object) -> str:
    """A stored pipeline reference, in words: a recipe by its file and settings."""
    import json

    text = str(ref)
    if not text.startswith("recipe:"):
        return text
    try:
        settings = json.loads(text.removeprefix("recipe:"))
        words = f"recipe {settings['path']}"
    except (ValueError, KeyError, TypeError):
        return text
    for name, label in (("set", "--set"), ("allow_paths", "--allow-path")):
        values = settings.get(name) or []
        if isinstance(values, list):
            words += "".join(f" {label} {value}" for value in values)
    return words


cache_app = typer.Typer(
    help="Look after the project's cache file (.headrace/cache.sqlite, or $HEADRACE_CACHE_DIR).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")

CachePathOption = Annotated[
    Path | None,
    typer.Option("--path", help="the cache file (default: the project's)"),
]


def _cache_file(path: Path | None) -> Path:
    from .cache import default_path

    found = path or default_path()
    if not found.exists():
        typer.echo(f"no cache file at {found}", err=True)
        raise typer.Exit(1)
    return found


@cache_app.command("stats")
def cache_stats(path: CachePathOption = None) -> None:
    """Entries and bytes per step, and how many are expired or stale."""
    from .cache.manage import stats

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
    from .cache.manage import clear

    removed = clear(_cache_file(path), step)
    typer.echo(f"removed {removed:,} entries")


@cache_app.command("prune")
def cache_prune(path: CachePathOption = None) -> None:
    """Remove expired entries, and those of step versions no longer in use."""
    from .cache.manage import prune

    expired, stale = prune(_cache_file(path))
    typer.echo(f"removed {expired:,} expired and {stale:,} stale entries")


@app.command()
def sim(
    rpm: Annotated[float | None, typer.Option(help="requests per minute accepted")] = None,
    tpm: Annotated[float | None, typer.Option(help="tokens per minute accepted")] = None,
    burst: Annotated[
        float | None, typer.Option(help="request bucket size (default: one second of rpm)")
    ] = None,
    token_burst: Annotated[
        float | None, typer.Option(help="token bucket size (default: one second of tpm)")
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="time to answer (the median)")] = 0.0,
    latency_sigma: Annotated[
        float, typer.Option(help="sigma of a lognormal latency (0: fixed)")
    ] = 0.0,
    repeatable: Annotated[
        bool, typer.Option(help="draw latencies from a hash of the request")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="requests served at once; more get 429")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(help=f"KIND=RATE, repeatable; kinds: {' '.join(FAULTS)}"),
    ] = None,
    storm_every: Annotated[float | None, typer.Option(help="seconds between 429 storms")] = None,
    storm_for: Annotated[float, typer.Option(help="seconds each 429 storm lasts")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of the fault and latency draws")] = 0,
    host: Annotated[str, typer.Option(help="a loopback address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 8000,
) -> None:
    """Serve a simulated OpenAI-compatible provider with limits, latency and faults."""
    from .sim import SimConfig, parse_faults, run_forever

    try:
        config = SimConfig(
            rpm=rpm,
            tpm=tpm,
            burst=burst,
            token_burst=token_burst,
            latency_ms=latency_ms,
            latency_sigma=latency_sigma,
            repeatable=repeatable,
            concurrency=concurrency,
            faults=parse_faults(fault or []),
            storm_every=storm_every,
            storm_for=storm_for,
            seed=seed,
        )
        run_forever(config, host, port)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    limit: Annotated[
        int,
        typer.Option(help="paragraphs to take, at an even stride over the corpus (0: all)"),
    ] = 2_000,
    out: Annotated[Path, typer.Option(help="where the Parquet output and the run store go")] = Path(
        "headrace-demo"
    ),
    fresh: Annotated[bool, typer.Option(help="delete --out first and start again")] = False,
    device: Annotated[
        str | None, typer.Option(help="where the embedding model runs (default: cuda if any)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show the progress line")] = True,
) -> None:
    """The showcase: State of the Union paragraphs through local embeddings, VADER
    sentiment and an LLM tone judge (a local simulator unless OPENAI_BASE_URL is set),
    into Parquet. No keys, no network; an interrupted demo resumes where it stopped."""
    from .errors import HeadraceError

    try:
        from .demo import report, run_demo
    except ImportError as exc:  # pragma: no cover - the extras are installed in CI
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def started(taken: int, total: int, judge: str, resuming: bool) -> None:
        typer.echo(
            f"headrace demo: {taken:,} of {total:,} paragraphs of the State of the Union "
            f"addresses, 1790 to today\ntone judged by {judge}\nwriting to {out}/\n"
            + (
                f"resuming the demo run in {out}/: paragraphs it finished keep the tones "
                "they were given then (--fresh starts again)\n"
                if resuming
                else ""
            )
        )

    try:
        done = run_demo(
            out,
            limit=limit or None,
            fresh=fresh,
            device=device,
            progress=progress,
            on_start=started,
        )
    except HeadraceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(done.result.summary())
    typer.echo("")
    typer.echo(report(done.parquet_dir))
    typer.echo(
        f"\nwritten: {done.parquet_dir}/ (Parquet), {out / 'run'}/ (run store); "
        f"headrace status {out / 'run'} shows it"
    )
    if done.result.stopped:
        raise typer.Exit(EXIT_STOPPED)
    if done.result.items_dead:
        raise typer.Exit(EXIT_DEAD)


def _where(description: dict[str, Any]) -> str:
    """A stored source or sink, in a few words."""
    kind = description.get("kind", "?")
    place = description.get("path") or description.get("url") or "(in memory)"
    table = f" table {description['table']}" if "table" in description else ""
    return f"{kind}: {place}{table}"


def main() -> None:
    """Entry point of the ``headrace`` console script."""
    app()
