"""Running a pipeline: ``hr.run`` / ``hr.arun``.

A run is planned by :func:`headrace.engine.plan.plan_run` (in memory, durably, or
on a backend) and carried out by :class:`headrace.engine.run_loop.RunLoop`, or by
the backend; a durable run's store, sink and writer are set up by
:class:`headrace.store.session.DurableSession`.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, Literal

from ..errors import HeadraceError, TooManyDead
from ..io.records import DurableSink
from ..limits.budget import Budget
from ..pipeline.step import Step, as_step
from .plan import RunPlan, default_window, plan_run
from .result import RunResult, dead_allowed
from .run_loop import RunLoop
from .run_options import Backend, Duplicates, OnBadInput, OnError, RunOptions, Sink

__all__ = ["RunOptions", "arun", "default_window", "execute", "run", "run_with"]


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
    rerun: str | None = None,
    duplicates: Duplicates = "error",
    budget: Budget | None = None,
    max_dead: int | float | str | None = None,
    backend: Backend | None = None,
    metrics_port: int | None = None,
    deadline: float | str | datetime.datetime | None = None,
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
    rerun: str | None = None,
    duplicates: Duplicates = "error",
    budget: Budget | None = None,
    max_dead: int | float | str | None = None,
    backend: Backend | None = None,
    metrics_port: int | None = None,
    deadline: float | str | datetime.datetime | None = None,
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
        rerun: run again only the items of the run stored in ``run_dir`` whose stored
            output or dead letter matches this sandboxed condition
            (``"confidence < 0.5"``, ``"error_type == 'ValidationError'"``), with the
            pipeline as given now (its changed settings adopted and recorded); each
            new answer replaces the old in the sink, which ends with each key once.
            See :func:`rerun` and ``docs/rerun.md``.
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
        deadline: when the results are needed: a duration from now (``"6h"``, seconds)
            or a ``datetime``. LLM steps on ``tier="auto"`` send each request by the
            cheapest tier that still meets it, moving work online as it nears (see
            :mod:`headrace.llm.tier.auto`); a resume's duration counts from its own start.
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


def rerun(
    pipeline: Step[Any, Any] | Callable[[Any], Any],
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    where: str,
    run_dir: str | os.PathLike[str],
    sink: Sink | DurableSink | None = None,
    **options: Any,
) -> RunResult:
    """Run again the items of the run stored in ``run_dir`` whose stored output or dead
    letter matches ``where``, replacing their outputs; every other output stays.

    ``run(pipeline, source, sink=sink, run_dir=run_dir, rerun=where, **options)``: the
    same source and sink as the stored run, the pipeline with what should change (a
    larger ``max_tokens``, another model). The condition sees an output's fields by
    name, ``output``, ``key``, ``status`` (``"done"`` or ``"dead"``) and a dead letter's
    ``step``, ``error_type``, ``message`` and ``attempts``. Killed part way, the same
    call (or a resume) finishes the chosen items first, without choosing again.

    Raises:
        ExpressionError: the condition fails on an item, or names nothing any item has.
        ResumeMismatch: no run in ``run_dir``, or its source or sink differ.
    """
    return run(pipeline, source, sink=sink, run_dir=run_dir, rerun=where, **options)


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
        TooManyDead: more dead letters than ``options.failures.max_dead``.
    """
    root = as_step(pipeline, after=None)
    plan = plan_run(root, source, sink=sink, options=options, pipeline_ref=pipeline_ref)
    result = await execute(plan)
    max_dead = options.failures.max_dead
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


async def execute(plan: RunPlan) -> RunResult:
    """Carry out ``plan``: in this process, or on its backend."""
    backend = plan.options.backend
    if backend is not None:
        result: RunResult = await backend.execute(plan)
        return result
    return await RunLoop(plan).execute()
