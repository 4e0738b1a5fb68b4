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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from time import perf_counter
from typing import Any, Literal

from .activity import Activity
from .compose import first_leaf
from .errors import HeadraceError, PipelineError, SourceError, StepFailed
from .metrics import RunMetrics
from .progress import Counts, run_progress
from .result import DeadLetter, RunResult
from .runtime import RunContext
from .sequencer import Sequencer
from .step import FILTERED, Step, as_step

__all__ = ["arun", "default_window", "run"]

OnError = Literal["dead_letter", "raise"]
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
) -> RunResult:
    """Run ``pipeline`` over every item of ``source``.

    Args:
        pipeline: a step or composition (a plain callable is wrapped as a step).
        source: any iterable or async iterable; read lazily, one item at a time.
        sink: called with each output (sync or async); without one, outputs are
            collected in ``result.outputs``. An exception from the sink stops the run.
        window: the most items in flight at once; default :func:`default_window`.
        ordered: hand outputs on in input order. A finished item waits for the items
            before it; the wait is bounded by the window.
        on_error: ``"dead_letter"`` records a failed item and goes on;
            ``"raise"`` stops the run at the first failure and raises it.
        progress: show progress (a bar on a terminal, log lines otherwise).

    Returns:
        A :class:`RunResult` with outputs, dead letters and metrics.

    Raises:
        PipelineError: the pipeline or an option is invalid (before any item runs).
        SourceError: the source is not iterable (before any item runs), or its
            iterator raised (after the items already read have finished).
        StepFailed: with ``on_error="raise"``, the first item that failed.
    """
    root = as_step(pipeline, after=None)
    if on_error not in ("dead_letter", "raise"):
        raise PipelineError(f"on_error must be 'dead_letter' or 'raise', got {on_error!r}")
    if window is None:
        window = default_window(root)
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise PipelineError(f"window must be a positive integer, got {window!r}")
    if sink is not None and not callable(sink):
        raise PipelineError(f"sink must be callable, got {type(sink).__name__}")
    engine = _Run(root, _open_source(source), sink, window, ordered, on_error, progress)
    return await engine.execute()


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
    ) -> None:
        self.root = root
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
        self.n_in = self.n_out = self.n_filtered = 0
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.pull_lock = asyncio.Lock()
        self.lanes_left = window
        self.finished = asyncio.Event()
        self.total = _length_hint(items)

    async def execute(self) -> RunResult:
        started = perf_counter()
        ctx: RunContext | None = None
        aborted = True
        try:
            async with asyncio.TaskGroup() as group:
                ctx = RunContext(self.activity, _spawner(group))
                handler = ctx.bind(self.root)
                emit = self._emitter()
                self.activity.enter(self.window)
                for _ in range(self.window):
                    group.create_task(self._lane(handler, emit))
                if self.progress:
                    group.create_task(run_progress(self._counts, self.finished))
            aborted = False
        except BaseExceptionGroup as group_error:
            first = first_leaf(group_error)
            raise first from first.__cause__
        finally:
            if ctx is not None:
                ctx.close(aborted=aborted)
        metrics = RunMetrics(
            items_in=self.n_in,
            items_out=self.n_out,
            items_dead=len(self.dead),
            items_filtered=self.n_filtered,
            wall_s=perf_counter() - started,
            steps=ctx.metrics if ctx is not None else [],
        )
        result = RunResult(outputs=self.outputs, dead_letters=self.dead, metrics=metrics)
        if self.source_error is not None:
            error = self.source_error
            raise SourceError(
                f"the source raised {type(error).__name__}: {error} after {self.n_in:,} items; "
                "the items read before it finished (see .result)",
                result=result,
            ) from error
        return result

    def _counts(self) -> Counts:
        return Counts(
            done=self.n_out + len(self.dead) + self.n_filtered,
            dead=len(self.dead),
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
        is_async_source = self.is_async_source
        next_sync = self._next_sync
        while True:
            # drop the last item before waiting for the next: one item per lane at most
            item = out = None
            item = (await self._next_async()) if is_async_source else next_sync()
            if item is _END:
                break
            index = self.n_in
            self.n_in = index + 1
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
                cause = failure.cause
                notes = getattr(failure, "__notes__", None)
                self.dead.append(
                    DeadLetter(
                        index=index,
                        item=item,
                        step=failure.step,
                        error_type=type(cause).__name__,
                        message=f"{cause} ({'; '.join(notes)})" if notes else str(cause),
                        attempts=failure.attempts,
                        error=cause,
                    )
                )
                continue
            if out is FILTERED:
                self.n_filtered += 1
                if sequencer is not None:
                    sequencer.done(index)
                continue
            if sequencer is not None:
                await sequencer.wait_turn(index)
            if sink_is_async:
                await emit(out)
            else:
                emit(out)
            self.n_out += 1
            if sequencer is not None:
                sequencer.done(index)
        self.lanes_left -= 1
        if not self.lanes_left:
            self.finished.set()
        self.activity.leave()


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
