"""The local engine: streams items from a source through a pipeline under a bounded window.

The run keeps ``window`` *lanes*. A lane takes the next item from the source,
carries it through the whole step graph, hands the output on, and takes the next
one. So at most ``window`` items are in flight (memory is bounded by the window,
not the dataset), each step's own concurrency limit holds items back in front of
it, and a slow step holds back the source itself: backpressure all the way up.
No task or queue is created per item on the plain path.

Every item ends exactly once: as an output, a dead letter, or filtered.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

from .activity import Activity
from .compose import first_leaf
from .durable import DurableSession
from .errors import BadInput, HeadraceError, PipelineError, SourceError, StepFailed
from .io.jsonl import write_jsonl
from .io.records import BadRecord, KeyedSource, Source, encode_json
from .metrics import RunMetrics
from .progress import Counts, run_progress
from .result import DeadLetter, RunResult
from .runtime import RunContext
from .sequencer import Sequencer
from .step import FILTERED, Step, as_step
from .store.sqlite import FinishedItem

__all__ = ["arun", "default_window", "run"]

OnError = Literal["dead_letter", "raise"]
OnBadInput = Literal["dead_letter", "stop"]
Sink = Callable[[Any], Any]


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
    sink: Sink | None = None,
    window: int | None = None,
    ordered: bool = False,
    on_error: OnError = "dead_letter",
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    key: str | Callable[[Any], Any] | None = None,
    on_bad_input: OnBadInput = "dead_letter",
    retry_dead: bool = False,
) -> RunResult:
    """Run ``pipeline`` over every item of ``source`` and wait for the result.

    The synchronous form of :func:`arun` (same arguments); it starts and closes its
    own event loop, so call :func:`arun` from async code instead.

    Raises:
        HeadraceError: called from a running event loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise HeadraceError(
            "hr.run() was called from a running event loop; use `await hr.arun(...)` there"
        )
    return asyncio.run(
        arun(
            pipeline,
            source,
            sink=sink,
            window=window,
            ordered=ordered,
            on_error=on_error,
            progress=progress,
            run_dir=run_dir,
            resume=resume,
            force=force,
            key=key,
            on_bad_input=on_bad_input,
            retry_dead=retry_dead,
        )
    )


async def arun(
    pipeline: Step[Any, Any] | Callable[[Any], Any],
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    sink: Sink | None = None,
    window: int | None = None,
    ordered: bool = False,
    on_error: OnError = "dead_letter",
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    key: str | Callable[[Any], Any] | None = None,
    on_bad_input: OnBadInput = "dead_letter",
    retry_dead: bool = False,
) -> RunResult:
    """Run ``pipeline`` over every item of ``source``.

    Args:
        pipeline: a step or composition (a plain callable is wrapped as a step).
        source: any iterable or async iterable; read lazily, one item at a time.
        sink: where outputs go. A durable sink (:func:`write_jsonl`,
            :func:`write_batches`) commits outputs with the run store; a callable is
            called with each output (sync or async; not with ``run_dir``). Without
            one, outputs are collected in ``result.outputs``, or, with ``run_dir``,
            written to ``<run_dir>/outputs.jsonl``. An exception from a sink stops
            the run.
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
        resume: continue the run stored in ``run_dir``.
        retry_dead: run again only the items that are dead letters in the run stored
            in ``run_dir`` (after a fix); those that succeed now reach the sink and
            leave the dead letters.
        force: resume even though the pipeline's fingerprint changed (recorded).
        key: what identifies an item of a plain iterable: a field name or a
            function; default: its position and a hash of its content. Sources
            such as :func:`read_jsonl` take their own ``key``.
        on_bad_input: a record the source cannot read becomes a dead letter
            (``"dead_letter"``) or stops the run after committing what finished
            (``"stop"``, raising :class:`BadInput`).

    Returns:
        A :class:`RunResult` with outputs, dead letters and metrics.

    Raises:
        PipelineError: the pipeline or an option is invalid (before any item runs).
        SourceError: the source is not iterable (before any item runs), or its
            iterator raised (after the items already read have finished).
        StepFailed: with ``on_error="raise"``, the first item that failed.
        BadInput: with ``on_bad_input="stop"``, the first bad record.
        ResumeMismatch: ``resume`` does not match the run stored in ``run_dir``.
    """
    root = as_step(pipeline, after=None)
    if on_error not in ("dead_letter", "raise"):
        raise PipelineError(f"on_error must be 'dead_letter' or 'raise', got {on_error!r}")
    if on_bad_input not in ("dead_letter", "stop"):
        raise PipelineError(f"on_bad_input must be 'dead_letter' or 'stop', got {on_bad_input!r}")
    if window is None:
        window = default_window(root)
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise PipelineError(f"window must be a positive integer, got {window!r}")
    if (resume or force or retry_dead) and run_dir is None:
        raise PipelineError("resume, retry_dead and force need the run_dir of a stored run")
    mode = "retry_dead" if retry_dead else "resume" if resume else "new"
    return await execute(
        root,
        source,
        sink=sink,
        window=window,
        ordered=ordered,
        on_error=on_error,
        progress=progress,
        run_dir=run_dir,
        mode=mode,
        force=force,
        key=key,
        on_bad_input=on_bad_input,
        pipeline_ref=None,
    )


async def execute(
    root: Step[Any, Any],
    source: Any,
    *,
    sink: Any,
    window: int,
    ordered: bool,
    on_error: OnError,
    progress: bool,
    run_dir: str | os.PathLike[str] | None,
    mode: str,
    force: bool,
    key: str | Callable[[Any], Any] | None,
    on_bad_input: OnBadInput,
    pipeline_ref: str | None,
) -> RunResult:
    """Plan the run (in memory or durable) and carry it out; ``arun`` and the CLI call this.

    ``mode`` is ``"new"``, ``"resume"`` or ``"retry_dead"``; ``pipeline_ref`` is the
    import path the CLI loaded the pipeline from (stored so a resume can load it).
    """
    durable_sink = sink is not None and _is_durable_sink(sink)
    if sink is not None and not durable_sink and not callable(sink):
        raise PipelineError(f"sink must be callable or a headrace sink, got {type(sink).__name__}")
    if run_dir is not None and sink is not None and not durable_sink:
        raise PipelineError(
            "a callable sink cannot be committed with the run store; with run_dir use a "
            "durable sink such as hr.write_jsonl(...) or hr.write_batches(...)"
        )
    session: DurableSession | None = None
    if run_dir is not None or durable_sink:
        records = _open_records(source, key)
        if sink is None:
            sink = write_jsonl(Path(run_dir or ".") / "outputs.jsonl")
        definition = {
            "pipeline": pipeline_ref or root.name,
            "source": records.describe(),
            "sink": sink.describe(),
            "options": {"ordered": ordered, "on_error": on_error, "on_bad_input": on_bad_input},
        }
        session = DurableSession(
            run_dir=Path(run_dir) if run_dir is not None else None,
            sink=sink,
            definition=definition,
            fingerprint=root.fingerprint,
            mode=mode,
            force=force,
        )
        items: Any = iter(records.records())
    elif isinstance(source, Source):
        items = iter(_open_records(source, key).records())
    else:
        items = _open_source(source)
    keyed = session is not None or isinstance(source, Source)
    engine = _Run(
        root,
        items,
        None if durable_sink else sink,
        window,
        ordered,
        on_error,
        progress,
        keyed=keyed,
        session=session,
        on_bad_input=on_bad_input,
    )
    return await engine.execute()


def _is_durable_sink(sink: Any) -> bool:
    return all(callable(getattr(sink, name, None)) for name in ("open", "write", "describe"))


def _open_records(source: Any, key: str | Callable[[Any], Any] | None) -> Source:
    if isinstance(source, Source):
        if key is not None:
            raise PipelineError(
                "key= is for plain iterables; give the key to the reader, e.g. "
                "hr.read_jsonl(path, key='id')"
            )
        return source
    if isinstance(source, AsyncIterable):
        raise SourceError("a durable run reads a sync source (an iterable or a headrace reader)")
    _open_source(source)  # the same checks as an in-memory run
    return KeyedSource(source, key)


def _open_source(source: Any) -> Iterator[Any] | AsyncIterator[Any]:
    if isinstance(source, AsyncIterable):
        items: AsyncIterator[Any] = aiter(source)
        return items
    if isinstance(source, str | bytes):
        raise SourceError(
            f"the source is a {type(source).__name__}, which would run one item per "
            "character; pass a list of items or a reader such as a generator"
        )
    try:
        sync_items: Iterator[Any] = iter(source)
    except TypeError:
        raise SourceError(
            f"the source must be an iterable or async iterable of items, got "
            f"{type(source).__name__}"
        ) from None
    return sync_items


class _Run:
    """One run's state: lanes, counters, outcomes."""

    def __init__(
        self,
        root: Step[Any, Any],
        items: Iterator[Any] | AsyncIterator[Any],
        sink: Sink | None,
        window: int,
        ordered: bool,
        on_error: OnError,
        progress: bool,
        *,
        keyed: bool = False,
        session: DurableSession | None = None,
        on_bad_input: OnBadInput = "dead_letter",
    ) -> None:
        self.root = root
        self.keyed = keyed
        self.session = session
        self.on_bad_input = on_bad_input
        self.position = 0
        self.n_skipped = 0
        self.items = items
        self.is_async_source = isinstance(items, AsyncIterator)
        self.sink = sink
        self.window = window
        self.ordered = ordered
        self.on_error = on_error
        self.progress = progress
        self.activity = Activity()
        self.sequencer = Sequencer(self.activity) if ordered else None
        self.outputs: list[Any] = []
        self.dead: list[DeadLetter] = []
        self.n_in = self.n_out = self.n_filtered = self.n_dead = 0
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.pull_lock = asyncio.Lock()
        self.lanes_left = window
        self.finished = asyncio.Event()
        self.total = _length_hint(items)

    async def execute(self) -> RunResult:
        started = perf_counter()
        ctx: RunContext | None = None
        session = self.session
        aborted = True
        if session is not None:
            session.open()
        try:
            async with asyncio.TaskGroup() as group:
                ctx = RunContext(self.activity, _spawner(group))
                handler = ctx.bind(self.root)
                emit = self._emitter()
                self.activity.enter(self.window)
                for _ in range(self.window):
                    group.create_task(self._lane(handler, emit))
                if session is not None and session.writer is not None:
                    group.create_task(session.writer.run())
                if self.progress:
                    group.create_task(run_progress(self._counts, self.finished))
            aborted = False
        except BaseExceptionGroup as group_error:
            first = first_leaf(group_error)
            raise first from first.__cause__
        finally:
            try:
                if ctx is not None:
                    ctx.close(aborted=aborted)
            finally:
                if session is not None:
                    if not aborted:
                        self.dead = [_dead_letter(row) for row in session.dead_letters()]
                        self.n_skipped = session.skipped
                    session.close(aborted=aborted)
        metrics = RunMetrics(
            items_in=self.n_in,
            items_out=self.n_out,
            items_dead=self.n_dead,
            items_filtered=self.n_filtered,
            items_skipped=self.n_skipped,
            wall_s=perf_counter() - started,
            steps=ctx.metrics if ctx is not None else [],
        )
        result = RunResult(outputs=self.outputs, dead_letters=self.dead, metrics=metrics)
        if self.source_error is not None:
            error = self.source_error
            if isinstance(error, BadInput):
                error.result = result
                raise error
            raise SourceError(
                f"the source raised {type(error).__name__}: {error} after {self.n_in:,} items; "
                "the items read before it finished (see .result)",
                result=result,
            ) from error
        return result

    def _counts(self) -> Counts:
        return Counts(
            done=self.n_out + self.n_dead + self.n_filtered,
            dead=self.n_dead,
            total=self.total,
        )

    def _emitter(self) -> Callable[[Any], Any]:
        """Return how an output is handed on: collected, or given to the sink."""
        sink = self.sink
        if sink is None:
            return self.outputs.append
        return sink

    async def _next_async(self) -> Any:
        async with self.pull_lock:
            if self.exhausted:
                return _END
            try:
                return await anext(self.items)  # type: ignore[arg-type]
            except StopAsyncIteration:
                self.exhausted = True
            except Exception as exc:
                self.source_error, self.exhausted = exc, True
            return _END

    def _next_keyed(self) -> Any:
        """The next record to run as ``(index, key, value or BadRecord)``, skipping
        what a durable session has finished already."""
        session = self.session
        while not self.exhausted:
            try:
                record = next(self.items)  # type: ignore[arg-type]
            except StopIteration:
                self.exhausted = True
                break
            except Exception as exc:
                self.source_error, self.exhausted = exc, True
                break
            index = self.position
            self.position = index + 1
            if isinstance(record, BadRecord):
                key, value = f"bad:{index}", record
            else:
                key, value = record
            if session is not None and session.skip(index, key):
                continue
            return index, key, value
        return _END

    def _next_sync(self) -> Any:
        if self.exhausted:
            return _END
        try:
            return next(self.items)  # type: ignore[arg-type]
        except StopIteration:
            self.exhausted = True
        except Exception as exc:
            self.source_error, self.exhausted = exc, True
        return _END

    async def _lane(self, handler: Callable[[Any], Any], emit: Callable[[Any], Any]) -> None:
        sequencer = self.sequencer
        sink_is_async = self.sink is not None and (
            inspect.iscoroutinefunction(self.sink)
            or inspect.iscoroutinefunction(getattr(self.sink, "__call__", None))  # noqa: B004
        )
        writer = self.session.writer if self.session is not None else None
        keyed = self.keyed
        pull = self._next_keyed if keyed else self._next_sync
        is_async_source = self.is_async_source
        key: str | None = None
        while True:
            # drop the last item before waiting for the next: one item per lane at most
            item = out = None
            item = (await self._next_async()) if is_async_source else pull()
            if item is _END:
                break
            if keyed:
                index, key, item = item
                if type(item) is BadRecord:
                    if self.on_bad_input == "stop":
                        self.source_error = BadInput(f"{item.where}: {item.reason}")
                        self.exhausted = True
                        break
                    self.n_in += 1
                    failure = StepFailed("<source>", BadInput(f"{item.where}: {item.reason}"))
                    await self._record_dead(index, key, item.raw, failure)
                    continue
            else:
                index = self.n_in
            self.n_in += 1
            if sequencer is not None:
                sequencer.ticket()
            try:
                out = await handler(item)
            except StepFailed as failure:
                failure.index = index
                if sequencer is not None:
                    sequencer.done(index)
                if self.on_error == "raise":
                    raise
                await self._record_dead(index, key, item, failure)
                continue
            if out is FILTERED:
                self.n_filtered += 1
                if sequencer is not None:
                    sequencer.done(index)
                if writer is not None:
                    wait = writer.filtered(index, key)  # type: ignore[arg-type]
                    if wait is not None:
                        await wait
                continue
            if sequencer is not None:
                await sequencer.wait_turn(index)
            if writer is not None:
                try:
                    line = encode_json(out)
                except TypeError as exc:
                    if sequencer is not None:
                        sequencer.done(index)
                    await self._record_dead(index, key, item, StepFailed("<sink>", exc))
                    continue
                wait = writer.output(index, key, line)  # type: ignore[arg-type]
                if wait is not None:
                    await wait
            elif sink_is_async:
                await emit(out)
            else:
                emit(out)
            self.n_out += 1
            if sequencer is not None:
                sequencer.done(index)
        self.lanes_left -= 1
        if not self.lanes_left:
            self.finished.set()
            if writer is not None:
                writer.close()
        self.activity.leave()

    async def _record_dead(
        self, index: int, key: str | None, item: Any, failure: StepFailed
    ) -> None:
        cause = failure.cause
        notes = getattr(failure, "__notes__", None)
        message = f"{cause} ({'; '.join(notes)})" if notes else str(cause)
        error_type = type(cause).__name__
        self.n_dead += 1
        writer = self.session.writer if self.session is not None else None
        if writer is None:
            self.dead.append(
                DeadLetter(
                    index=index,
                    item=item,
                    step=failure.step,
                    error_type=error_type,
                    message=message,
                    attempts=failure.attempts,
                    error=cause,
                )
            )
            return
        try:
            shown = encode_json(item).decode()
        except TypeError:
            shown = encode_json(repr(item)).decode()
        wait = writer.dead(
            index,
            key or str(index),
            step=failure.step,
            error_type=error_type,
            message=message,
            attempts=failure.attempts,
            item=shown,
        )
        if wait is not None:
            await wait


def _dead_letter(row: FinishedItem) -> DeadLetter:
    return DeadLetter(
        index=row.index,
        item=row.decoded_item(),
        step=row.step or "",
        error_type=row.error_type or "",
        message=row.message or "",
        attempts=row.attempts or 1,
    )


class _End:
    def __repr__(self) -> str:
        return "<end of source>"


_END = _End()


def _spawner(group: asyncio.TaskGroup) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def spawn(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return group.create_task(coro)
        except RuntimeError:
            # The run is already shutting down (an error or a cancel): nothing new starts.
            coro.close()
            return None

    return spawn


def _length_hint(items: Any) -> int | None:
    source = getattr(items, "__length_hint__", None)
    if source is None:
        return None
    try:
        hint = int(source())
    except (TypeError, ValueError):
        return None
    return hint if hint > 0 else None
