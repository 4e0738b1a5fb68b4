"""A run's plan: everything decided before its first item runs.

:func:`plan_run` checks the pipeline, the source, the sink and the options
together, once, and decides how the run goes: in memory, durably (a
:class:`~headrace.store.session.DurableSession` committing outputs with the run
store), or, with a backend, in shards elsewhere. The plan is carried out by
:class:`~headrace.engine.run_loop.RunLoop` in this process, or by the backend
(``hr.Ray``), which runs each shard's plan through a run loop of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PipelineError, SourceError
from ..io.callback import CallbackSink
from ..io.jsonl import write_jsonl
from ..io.keys import Duplicates
from ..io.records import AsyncKeyedSource, DurableSink, KeyedSource, Source
from ..loading.extras import needed_by_run, require
from ..pipeline.fingerprint import leaf_identities
from ..pipeline.step import Step
from ..store.session import DurableSession
from .run_options import RunOptions, Sink

__all__ = ["RunPlan", "default_window", "durable_session", "plan_run", "run_definition"]


def default_window(pipeline: Step[Any, Any]) -> int:
    """The default number of items in flight: enough to fill every step's slots at once.

    That is the sum over all steps of concurrency (times batch size for batched
    steps), at least 16. More lanes than that only queue in front of limits.
    """
    return max(16, pipeline.total_slots())


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """One run, decided: what runs, over what, into what, and how."""

    root: Step[Any, Any]
    """The pipeline, as one step."""
    options: RunOptions
    """The run's options, checked."""
    window: int
    """The most items in flight at once."""
    source: Source | None = None
    """The keyed source the items come from; ``None``: a plain iterable, whose items
    are numbered as they are read."""
    items: Iterator[Any] | AsyncIterator[Any] | None = None
    """The items, read lazily (``(index, key, value)`` from a keyed source); ``None``
    in a plan for a backend, which splits ``source`` instead."""
    total: int | None = None
    """How many items the source holds, when it can tell."""
    duplicates: Duplicates | None = None
    """The policy for a repeated key; ``None`` where keys cannot repeat."""
    repeats: Mapping[int, str] | None = None
    """Positions whose key an earlier record has, decided before the run (a shard's)."""
    callback: Sink | None = None
    """A function handed each output (sync or async), if the sink is one."""
    sink: DurableSink | None = None
    """Where a durable run commits its outputs, with its store."""
    session: DurableSession | None = None
    """A durable run's session in this process (opened when the run starts)."""
    definition: Mapping[str, Any] | None = None
    """What a durable run stores about itself (:func:`run_definition`)."""

    @property
    def keyed(self) -> bool:
        """Whether items come as ``(index, key, value)`` from a keyed source."""
        return self.source is not None


def plan_run(
    root: Step[Any, Any],
    source: Any,
    *,
    sink: Any,
    options: RunOptions,
    pipeline_ref: str | None = None,
) -> RunPlan:
    """Decide how ``root`` runs over ``source`` into ``sink``, checking everything that
    can be checked before anything runs or is written.

    Raises:
        PipelineError: the sink, the options or the extras installed do not fit.
        SourceError: the source is not a sequence of items, or cannot be read at all.
    """
    require(
        needed_by_run(
            root,
            source=source,
            sink=sink,
            run_store=options.durability.run_store,
            backend=options.backend,
            metrics_port=options.observing.metrics_port,
        )
    )
    durable_sink = sink is not None and _is_durable_sink(sink)
    if sink is not None and not durable_sink and not callable(sink):
        raise PipelineError(f"sink must be callable or a headrace sink, got {type(sink).__name__}")
    window = options.window if options.window is not None else default_window(root)
    if options.backend is not None:
        local = root.local_only()
        if local is not None:
            raise PipelineError(f"a run with backend=... runs in workers: {local}")
        if sink is not None and not durable_sink:
            raise PipelineError(
                "a run with backend=... runs its items in workers, which cannot call a "
                "function of this process: give a file, Parquet or SQL sink"
            )
        records = _open_records(source, options.key)
        _check_source(records)
        target = (
            sink
            if sink is not None
            else write_jsonl(Path(str(options.durability.run_dir)) / "outputs.jsonl")
        )
        return RunPlan(
            root=root,
            options=options,
            window=window,
            source=records,
            duplicates=options.failures.duplicates,
            sink=target,
            definition=run_definition(root, records, target, options, pipeline_ref),
        )
    callback: Sink | None = None if durable_sink else sink
    if options.durability.run_dir is not None or durable_sink:
        return _durable_plan(root, source, sink, callback, options, window, pipeline_ref)
    if options.key is not None:
        raise PipelineError(
            "key= identifies items in a durable run; give run_dir=... (or a file sink) too"
        )
    if isinstance(source, Source):
        _check_source(source)
        return _keyed_plan(root, source, options, window, callback=callback)
    items = _open_source(source)
    return RunPlan(
        root=root,
        options=options,
        window=window,
        items=items,
        total=_length_hint(items),
        callback=callback,
    )


def _durable_plan(
    root: Step[Any, Any],
    source: Any,
    sink: Any,
    callback: Sink | None,
    options: RunOptions,
    window: int,
    pipeline_ref: str | None,
) -> RunPlan:
    records = _open_records(source, options.key)
    _check_source(records)
    run_dir = options.durability.run_dir
    if callback is not None:
        store_sink: DurableSink = CallbackSink(callback)
    elif sink is None:
        store_sink = write_jsonl(Path(run_dir or ".") / "outputs.jsonl")
    else:
        store_sink = sink
    definition = run_definition(root, records, store_sink, options, pipeline_ref)
    session = durable_session(root, options, store_sink, definition)
    return _keyed_plan(
        root,
        records,
        options,
        window,
        callback=callback,
        sink=store_sink,
        session=session,
        definition=definition,
    )


def _keyed_plan(
    root: Step[Any, Any],
    records: Source,
    options: RunOptions,
    window: int,
    *,
    callback: Sink | None,
    sink: DurableSink | None = None,
    session: DurableSession | None = None,
    definition: Mapping[str, Any] | None = None,
) -> RunPlan:
    items: Iterator[Any] | AsyncIterator[Any] = (
        records.arecords() if isinstance(records, AsyncKeyedSource) else iter(records.records())
    )
    unique = records.keys_unique
    total = _count(records)
    return RunPlan(
        root=root,
        options=options,
        window=window,
        source=records,
        items=items,
        total=total if total is not None else _length_hint(items),
        duplicates=None if unique else options.failures.duplicates,
        repeats=None if unique else getattr(records, "repeats", None),
        callback=callback,
        sink=sink,
        session=session,
        definition=definition,
    )


def durable_session(
    root: Step[Any, Any],
    options: RunOptions,
    sink: DurableSink,
    definition: Mapping[str, Any],
) -> DurableSession:
    """The session of a durable run of ``root`` into ``sink`` (opened when it starts):
    in ``options.durability.run_dir``, or the default ``.`` of a file sink without one."""
    run_dir = options.durability.run_dir
    return DurableSession(
        run_dir=Path(run_dir) if run_dir is not None else None,
        run_store=options.durability.run_store,
        sink=sink,
        definition=dict(definition),
        fingerprint=root.fingerprint,
        mode=options.mode,
        force=options.durability.force,
        overwrite=options.durability.overwrite,
        rebuild_sink=options.durability.rebuild_sink,
        rerun=options.durability.rerun,
    )


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
        "on_error": options.failures.on_error,
        "on_bad_input": options.failures.on_bad_input,
        "duplicates": options.failures.duplicates,
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


def _length_hint(items: Any) -> int | None:
    source = getattr(items, "__length_hint__", None)
    if source is None:
        return None
    try:
        hint = int(source())
    except (TypeError, ValueError):
        return None
    return hint if hint > 0 else None
