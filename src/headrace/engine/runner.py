"""Running a pipeline: ``hr.run`` / ``hr.arun``, and planning a run in memory or durably.

The lanes that carry items are in :mod:`headrace.engine.lanes`; a durable run's store,
sink and writer are set up by :class:`headrace.store.session.DurableSession`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from ..errors import HeadraceError, PipelineError, SourceError, TooManyDead
from ..extras import needed_by_run, require
from ..fingerprint import leaf_identities
from ..io.callback import CallbackSink
from ..io.jsonl import write_jsonl
from ..io.records import AsyncKeyedSource, DurableSink, KeyedSource, Source
from ..limits.budget import Budget, SharedSpend, spend_for
from ..pipeline.step import Step, as_step
from ..store.session import DurableSession
from .lanes import Duplicates, Lanes, OnBadInput, OnError, Sink
from .result import RunResult, dead_allowed
from .run_options import Backend, RunOptions

__all__ = ["RunOptions", "arun", "default_window", "run", "run_definition", "run_with"]


def default_window(pipeline: Step[Any, Any]) -> int:
    """The default number of items in flight: enough to fill every step's slots at once.

    That is the sum over all steps of concurrency (times batch size for batched
    steps), at least 16. More lanes than that only queue in front of limits.
    """
    return max(16, pipeline.total_slots())


def run(
    pipeline: Step[Any, Any] | Callable[[Any], Any],
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    sink: Sink | DurableSink | None = None,
    window: int | None = None,
    ordered: bool = False,
    on_error: OnError = "dead_letter",
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    run_store: str | None = None,
    resume: bool | Literal["auto"] = "auto",
    fresh: bool = False,
    force: bool = False,
    overwrite: bool = False,
    rebuild_sink: bool = False,
    key: str | Callable[[Any], Any] | None = None,
    on_bad_input: OnBadInput = "dead_letter",
    retry_dead: bool = False,
    duplicates: Duplicates = "error",
    budget: Budget | None = None,
    max_dead: int | float | str | None = None,
    backend: Backend | None = None,
    metrics_port: int | None = None,
) -> RunResult:
    """Run ``pipeline`` over every item of ``source`` and wait for the result.

    The synchronous form of :func:`arun` (same arguments); it starts and closes its
    own event loop, so call :func:`arun` from async code instead.

    Raises:
        HeadraceError: called from a running event loop.
    """
    options = RunOptions.among(locals())
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise HeadraceError(
            "hr.run() was called from a running event loop; use `await hr.arun(...)` there"
        )
    return asyncio.run(run_with(pipeline, source, sink=sink, options=options))


async def arun(
    pipeline: Step[Any, Any] | Callable[[Any], Any],
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    sink: Sink | DurableSink | None = None,
    window: int | None = None,
    ordered: bool = False,
    on_error: OnError = "dead_letter",
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    run_store: str | None = None,
    resume: bool | Literal["auto"] = "auto",
    fresh: bool = False,
    force: bool = False,
    overwrite: bool = False,
    rebuild_sink: bool = False,
    key: str | Callable[[Any], Any] | None = None,
    on_bad_input: OnBadInput = "dead_letter",
    retry_dead: bool = False,
    duplicates: Duplicates = "error",
    budget: Budget | None = None,
    max_dead: int | float | str | None = None,
    backend: Backend | None = None,
    metrics_port: int | None = None,
) -> RunResult:
    """Run ``pipeline`` over every item of ``source``.

    Args:
        pipeline: a step or composition (a plain callable is wrapped as a step).
        source: any iterable or async iterable; read lazily, one item at a time.
        sink: where outputs go. A durable sink (:func:`write_jsonl`,
            :func:`write_csv`, :func:`write_batches`, :func:`write_parquet`,
            :func:`write_sql`) commits outputs with the run store, exactly once
            per item across kills and resumes. A callable is called with each
            output (sync or async); with ``run_dir`` it is at least once across a
            kill (outputs since the last commit are handed again on resume).
            Without a sink, outputs are collected in ``result.outputs``, or, with
            ``run_dir``, written to ``<run_dir>/outputs.jsonl``. An exception from
            a sink stops the run.
        window: the most items in flight at once; default :func:`default_window`.
        ordered: hand outputs on in input order. A finished item waits for the items
            before it; the wait is bounded by the window.
        on_error: ``"dead_letter"`` records a failed item and goes on;
            ``"raise"`` stops the run at the first failure and raises it.
        progress: show progress (a bar on a terminal, log lines otherwise).
        run_dir: make the run durable: its store (``run.sqlite``) and
            ``dead.jsonl`` live here. Killed at any moment, the run finishes with
            ``resume=True`` (or ``headrace resume``): each item reaches the sink
            exactly once, and no finished item is computed again.
        run_store: keep the run's store in PostgreSQL (``"postgresql://..."``) instead
            of ``<run_dir>/run.sqlite``, e.g. to see or resume it from another
            machine; the run is named there by ``run_dir``'s last component.
        resume: what to do with a run already stored in ``run_dir``: ``"auto"``
            (the default) continues it when there is one and starts one when there
            is not; ``True`` continues it (and refuses a ``run_dir`` without one);
            ``False`` starts one (and refuses a ``run_dir`` that holds one). A
            stored run continues only with the same source, sink and pipeline
            (:class:`~headrace.errors.ResumeMismatch` names what differs).
        fresh: discard the run stored in ``run_dir``, if any, and its output at
            the sink, and start again.
        retry_dead: run again only the items that are dead letters in the run stored
            in ``run_dir`` (after a fix); those that succeed now reach the sink and
            leave the dead letters.
        force: resume even though the pipeline's fingerprint changed (recorded).
        overwrite: let a new run replace output already at its sink (a non-empty
            file, part files, a table with rows); without it the run is refused
            with :class:`~headrace.errors.OutputExists` before anything runs.
        rebuild_sink: with ``resume``: the sink no longer holds what was committed
            (:class:`~headrace.errors.SinkDamaged`); set its output aside
            (``<file>.damaged-<time>``, or ``damaged-<time>/`` in a directory) and
            compute every finished output again (dead letters and filtered items
            stay finished). Recorded in the store as a forced session.
        key: what identifies an item of a plain iterable: a field name or a
            function; default: its position and a hash of its content. Sources
            such as :func:`read_jsonl` take their own ``key``.
        on_bad_input: a record the source cannot read becomes a dead letter
            (``"dead_letter"``) or stops the run after committing what finished
            (``"stop"``, raising :class:`BadInput`).
        duplicates: what to do with a record whose key an earlier record has
            (checked where keys come from the data, not from positions):
            ``"error"`` treats it as bad input (a dead letter, or a stop with
            ``on_bad_input="stop"``), ``"first"`` drops it (counted in
            ``metrics.items_duplicate``), ``"suffix"`` keeps it as ``key#2``,
            ``key#3``, ... The check holds every key seen in memory (about 100
            bytes each).
        budget: the most the run may spend on LLM calls (:class:`~headrace.limits.budget.Budget`).
            Once reached, no new call is sent: the run stops reading, finishes what
            is in flight and ends with ``result.stopped`` set; the items left
            (``result.items_unfinished``) are finished by a resume.
        max_dead: raise :class:`~headrace.errors.TooManyDead` (with ``.result``) when
            the run ended with more dead letters than this: a count (``0``: any dead
            letter), or a share of the items read (``0.01`` or ``"1%"``). The run
            itself is not cut short: every item is tried and committed first.
            Default ``None``: never raise; ``result.ok`` tells whether all went well.
        backend: where the items run: ``None`` (this process) or ``hr.Ray(...)``, which
            splits the source into shards run by workers of a Ray cluster, each shard
            a durable run of its own under ``run_dir`` (see ``docs/scale.md``).
        metrics_port: serve the run's metrics for Prometheus on
            ``http://127.0.0.1:<port>/metrics`` while it runs (0: any free port), read
            at each scrape; needs ``headrace[metrics]`` (see ``docs/observe.md``).

    Returns:
        A :class:`RunResult` with outputs, dead letters and metrics.

    Raises:
        PipelineError: the pipeline or an option is invalid (before any item runs).
        SourceError: the source is not iterable (before any item runs), or its
            iterator raised (after the items already read have finished).
        StepFailed: with ``on_error="raise"``, the first item that failed.
        BadInput: with ``on_bad_input="stop"``, the first bad record.
        ResumeMismatch: ``resume`` does not match the run stored in ``run_dir``.
        TooManyDead: more dead letters than ``max_dead``.
    """
    options = RunOptions.among(locals())
    return await run_with(pipeline, source, sink=sink, options=options)


async def run_with(
    pipeline: Step[Any, Any] | Callable[[Any], Any],
    source: Any,
    *,
    sink: Sink | DurableSink | None = None,
    options: RunOptions,
    pipeline_ref: str | None = None,
) -> RunResult:
    """Run with options already made: :func:`arun`, recipes and the command line call
    this. ``pipeline_ref`` is the import path the command line loaded the pipeline
    from (stored, so that a resume can load it again).

    Raises:
        TooManyDead: more dead letters than ``options.max_dead``.
    """
    root = as_step(pipeline, after=None)
    result = await execute(root, source, sink=sink, options=options, pipeline_ref=pipeline_ref)
    max_dead = options.max_dead
    if max_dead is not None and result.items_dead > dead_allowed(max_dead, result.items_in):
        error = TooManyDead(
            f"{result.items_dead:,} of {result.items_in:,} items are dead letters "
            f"(max_dead={max_dead!r}); the first: {_first_dead(result)}"
        )
        error.result = result
        raise error
    return result


def _first_dead(result: RunResult) -> str:
    if not result.dead_letters:
        return "see the run's dead letters"
    dead = result.dead_letters[0]
    return f"{dead.step}: {dead.error_type}: {dead.message}"[:300]


async def execute(
    root: Step[Any, Any],
    source: Any,
    *,
    sink: Any,
    options: RunOptions,
    pipeline_ref: str | None,
) -> RunResult:
    """Plan the run (in memory or durably) and carry it out."""
    require(
        needed_by_run(
            root,
            source=source,
            sink=sink,
            run_store=options.run_store,
            backend=options.backend,
            metrics_port=options.metrics_port,
        )
    )
    run_dir, key = options.run_dir, options.key
    durable_sink = sink is not None and _is_durable_sink(sink)
    if sink is not None and not durable_sink and not callable(sink):
        raise PipelineError(f"sink must be callable or a headrace sink, got {type(sink).__name__}")
    if options.backend is not None:
        if sink is not None and not durable_sink:
            raise PipelineError(
                "a run with backend=... runs its items in workers, which cannot call a "
                "function of this process: give a file, Parquet or SQL sink"
            )
        records = _open_records(source, key)
        _check_source(records)
        assert run_dir is not None  # RunOptions checked it
        target = sink if sink is not None else write_jsonl(Path(run_dir) / "outputs.jsonl")
        return await options.backend.execute(root, records, target, options, pipeline_ref)
    session: DurableSession | None = None
    callback: Sink | None = None if durable_sink else sink
    if run_dir is not None or durable_sink:
        records = _open_records(source, key)
        _check_source(records)
        if callback is not None:
            store_sink: DurableSink = CallbackSink(callback)
        elif sink is None:
            store_sink = write_jsonl(Path(run_dir or ".") / "outputs.jsonl")
        else:
            store_sink = sink
        session = DurableSession(
            run_dir=Path(run_dir) if run_dir is not None else None,
            run_store=options.run_store,
            sink=store_sink,
            definition=run_definition(root, records, store_sink, options, pipeline_ref),
            fingerprint=root.fingerprint,
            mode=options.mode,
            force=options.force,
            overwrite=options.overwrite,
            rebuild_sink=options.rebuild_sink,
        )
        items: Any = (
            records.arecords() if isinstance(records, AsyncKeyedSource) else iter(records.records())
        )
        total = _count(records)
        unique = records.keys_unique
        places: Any = records
    elif key is not None:
        raise PipelineError(
            "key= identifies items in a durable run; give run_dir=... (or a file sink) too"
        )
    elif isinstance(source, Source):
        _check_source(source)
        items = iter(source.records())
        total = _count(source)
        unique = source.keys_unique
        places = source
    else:
        items = _open_source(source)
        total, unique, places = None, True, None
    keyed = session is not None or isinstance(source, Source)
    spend = spend_for(options.budget)
    engine = Lanes(
        root,
        items,
        callback,
        options.window if options.window is not None else default_window(root),
        options.ordered,
        options.on_error,
        options.progress,
        keyed=keyed,
        session=session,
        on_bad_input=options.on_bad_input,
        total=total,
        duplicates=None if unique else options.duplicates,
        spend=spend,
        places=places,
        repeats=None if unique else getattr(places, "repeats", None),
        metrics_port=options.metrics_port,
    )
    try:
        return await engine.execute()
    finally:
        if isinstance(spend, SharedSpend):
            await spend.close()


def run_definition(
    root: Step[Any, Any],
    source: Source,
    sink: DurableSink,
    options: RunOptions,
    pipeline_ref: str | None,
) -> dict[str, Any]:
    """What a durable run stores about itself: the pipeline (its import path, or its
    name), its steps' identities, the source, the sink and the options a resume
    keeps (the backend's too)."""
    kept: dict[str, Any] = {
        "ordered": options.ordered,
        "on_error": options.on_error,
        "on_bad_input": options.on_bad_input,
        "duplicates": options.duplicates,
    }
    if options.backend is not None:
        kept["backend"] = options.backend.describe()
    return {
        "pipeline": pipeline_ref or root.name,
        "steps": leaf_identities(root),
        "source": source.describe(),
        "sink": sink.describe(),
        "options": kept,
    }


def _is_durable_sink(sink: Any) -> bool:
    return all(callable(getattr(sink, name, None)) for name in ("open", "write", "describe"))


def _count(source: Source) -> int | None:
    try:
        return source.count()
    except (OSError, ValueError):
        return None  # the run itself reports an unreadable source


def _check_source(source: Source) -> None:
    """Refuse, before anything runs or is written, a source that cannot be read at all."""
    try:
        source.check()
    except (OSError, ValueError) as exc:
        raise SourceError(str(exc)) from exc


def _open_records(source: Any, key: str | Callable[[Any], Any] | None) -> Source:
    if isinstance(source, Source):
        if key is not None:
            raise PipelineError(
                "key= is for plain iterables; give the key to the reader, e.g. "
                "hr.read_jsonl(path, key='id')"
            )
        return source
    _check_items(source)
    if isinstance(source, AsyncIterable):
        return AsyncKeyedSource(source, key)
    return KeyedSource(source, key)


def _check_items(source: Any) -> None:
    """Refuse, before anything runs, a source that is not a sequence of items."""
    if isinstance(source, str | bytes):
        raise SourceError(
            f"the source is a {type(source).__name__}, which would run one item per "
            "character; pass a list of items or a reader such as a generator"
        )
    if not isinstance(source, Iterable | AsyncIterable):
        raise SourceError(
            f"the source must be an iterable or async iterable of items, got "
            f"{type(source).__name__}"
        )


def _open_source(source: Any) -> Iterator[Any] | AsyncIterator[Any]:
    _check_items(source)
    if isinstance(source, AsyncIterable):
        items: AsyncIterator[Any] = aiter(source)
        return items
    sync_items: Iterator[Any] = iter(source)
    return sync_items
