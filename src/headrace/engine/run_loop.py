"""The run loop: a run's lanes, each takes the next item, carries it through the step graph, and
hands its outcome on.

A run keeps ``window`` lanes, so at most ``window`` items are in flight: memory
is bounded by the window, not the dataset; each step's concurrency limit holds
items back in front of it, and a slow step holds back the source itself
(backpressure all the way up). No task or queue is created per item on the
plain path. Every item read ends exactly once: as an output, a dead letter, or
filtered.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from ..errors import BadInput, SourceError, StepFailed, error_text
from ..io.records import BadRecord, encode_json
from ..limits.budget import SharedSpend, run_stopped, spend_for
from ..metrics import RunMetrics, outage_line
from ..metrics.exporter import MetricsExporter
from ..metrics.otel import OtlpExporter
from ..metrics.progress import Counts, run_progress
from ..metrics.timeline import Timeline
from ..pipeline.step import FILTERED
from . import call, compose_run, graph_run  # noqa: F401  (registers the core binders)
from .activity import Activity
from .context import RunContext
from .feed import DUPLICATE, END, Feed
from .plan import RunPlan
from .result import RESULT_DEAD_LETTERS, DeadLetter, RunResult
from .sequencer import Sequencer
from .tasks import first_leaf, spawner

__all__ = ["RunLoop"]


TICK_S = 0.01
"""How often the run's ticker notes that the event loop is running other tasks."""
HOGGED_S = 0.05
"""After this long without the ticker running, a lane gives the loop up after each item
(so every lane does, in turn, until the ticker and the writer have run)."""


class RunLoop:
    """Carries out one :class:`~headrace.engine.plan.RunPlan` in this process: its
    counters, outcomes, feed and durable session, and ``window`` lanes."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.root = plan.root
        options = plan.options
        self.feed = Feed(
            plan.items if plan.items is not None else iter(()),
            keyed=plan.keyed,
            session=plan.session,
            duplicates=plan.duplicates,
            places=plan.source,
            repeats=plan.repeats,
        )
        self.spend = spend_for(options.budget)
        self.n_unfinished = self.n_duplicate = 0
        self.stop_reason: str | None = None  # why the run stopped taking items, if it did
        self.deadline = options.deadline_at
        self.keyed = plan.keyed
        self.session = plan.session
        self.on_bad_input = options.failures.on_bad_input
        self.sink = plan.callback
        self.window = plan.window
        self.ordered = options.ordered
        self.on_error = options.failures.on_error
        self.progress = options.observing.progress
        self.activity = Activity()
        self.sequencer = Sequencer(self.activity) if self.ordered else None
        self.outputs: list[Any] = []
        self.dead: list[DeadLetter] = []
        self.n_in = self.n_out = self.n_filtered = self.n_dead = 0
        # no more lanes than items (a batch-tier step's window is its batch size)
        self.lanes = min(self.window, max(16, plan.total or self.window))
        self.lanes_left = self.lanes
        self.finished = asyncio.Event()
        self.loop_ran = perf_counter()  # when the ticker last ran (see _tick)
        self.started = perf_counter()
        self.ctx: RunContext | None = None
        self.total = plan.total
        port = options.observing.metrics_port
        self.exporter = MetricsExporter(self._sample, port) if port is not None else None

    async def execute(self) -> RunResult:
        """Run the plan to its end and return its result (see :func:`~headrace.arun`)."""
        try:
            return await self._execute()
        finally:
            if isinstance(self.spend, SharedSpend):
                await self.spend.close()

    async def _execute(self) -> RunResult:
        self.started = perf_counter()
        ctx: RunContext | None = None
        session = self.session
        aborted = True
        failure: BaseException | None = None
        otlp = OtlpExporter.from_environment(self._sample)
        if otlp is not None:
            otlp.start()
        if self.exporter is not None:
            self.exporter.start()  # before the session: a port in use leaves nothing behind
        if session is not None:
            try:
                session.open(total=self.total)
            except BaseException:
                if self.exporter is not None:
                    self.exporter.stop()
                raise
        try:
            folder = self.plan.options.durability.run_dir  # a durable run's, and its lease
            run_dir = Path(folder) if folder is not None and session is not None else None
            fence = session.writer.fence if run_dir and session and session.writer else None
            async with asyncio.TaskGroup() as group:
                ctx = self.ctx = RunContext(
                    self.activity, spawner(group), self.spend, run_dir, fence, self.deadline
                )
                handler = ctx.bind(self.root)
                emit = self._emitter()
                self.activity.enter(self.lanes)
                for _ in range(self.lanes):
                    group.create_task(self._lane(handler, emit))
                group.create_task(self._tick())
                if session is not None and session.writer is not None:
                    group.create_task(session.writer.run())
                    if session.store is not None:
                        timeline = Timeline(self._sample, session.writer)
                        group.create_task(timeline.run(self.finished))
                if self.progress:
                    group.create_task(run_progress(self._counts, self.finished))
                if otlp is not None:
                    group.create_task(otlp.run(self.finished))
            aborted = False
        except BaseExceptionGroup as group_error:
            failure = first = first_leaf(group_error)
            raise first from first.__cause__
        finally:
            try:
                await self._close(ctx, aborted)
            finally:
                if otlp is not None:
                    await otlp.close(failure, aborted=aborted)
        metrics = self.metrics_now()
        result = RunResult(outputs=self.outputs, dead_letters=self.dead, metrics=metrics)
        if self.feed.source_error is not None:
            error = self.feed.source_error
            if isinstance(error, BadInput):
                error.result = result
                raise error
            raise SourceError(
                f"the source raised {type(error).__name__}: {error} after {self.n_in:,} items; "
                "the items read before it finished (see .result)", result=result
            ) from error  # fmt: skip
        return result

    async def _close(self, ctx: RunContext | None, aborted: bool) -> None:
        """Stop serving metrics, close the steps' resources, then the session."""
        if self.exporter is not None:
            self.exporter.stop()
        session = self.session
        try:
            if ctx is not None:
                try:
                    await ctx.aclose()
                finally:
                    ctx.close(aborted=aborted)
        finally:
            if session is not None:
                if not aborted:
                    # the first ones: dead.jsonl and the store hold every one of them
                    kept = session.dead_letters(limit=RESULT_DEAD_LETTERS)
                    self.dead = [DeadLetter.from_row(row) for row in kept]
                feed = self.feed
                read_all = feed.exhausted and feed.source_error is None and not self._stopped
                session.close(aborted=aborted, read=feed.position if read_all else None)

    def metrics_now(self) -> RunMetrics:
        """The run's metrics as they stand (at the end: the run's)."""
        metrics = RunMetrics(
            items_in=self.n_in,
            items_out=self.n_out,
            items_dead=self.n_dead,
            items_filtered=self.n_filtered,
            items_skipped=self.session.skipped if self.session is not None else 0,
            items_duplicate=self.n_duplicate,
            items_unfinished=self.n_unfinished,
            stopped=self.stop_reason,
            wall_s=perf_counter() - self.started,
            steps=self.ctx.metrics if self.ctx is not None else [],
        )
        writer = self.session.writer if self.session is not None else None
        if writer is not None:
            metrics.sink_busy_s = writer.busy_s
            metrics.sink_blocked_s = writer.blocked_s
        return metrics

    def _sample(self) -> dict[str, Any]:
        """The metrics now as a row of the run's time series (:mod:`.timeline`)."""
        data = self.metrics_now().to_dict(histograms=True)
        finished = self.n_out + self.n_dead + self.n_filtered + self.n_unfinished
        data["in_flight"] = self.n_in - finished
        data["total"] = self.total
        if (spend := self.spend) is not None:
            held = spend.held_usd if isinstance(spend, SharedSpend) else spend.reserved_usd
            data["budget"] = {"usd": spend.budget.usd, "committed_usd": held}
        return data

    @property
    def _stopped(self) -> bool:
        return self.n_unfinished > 0

    def _counts(self) -> Counts:
        return Counts(
            done=self.n_out + self.n_dead + self.n_filtered,
            dead=self.n_dead,
            total=self.total,
            skipped=self.session.skipped if self.session is not None else 0,
            note=self._outage(),
        )

    def _outage(self) -> str:
        """A line on the first step whose provider is down now, or empty."""
        for step in self.ctx.metrics if self.ctx is not None else ():
            circuit = step.circuit.statistics() if step.circuit is not None else None
            if circuit is not None and circuit.state != "closed":
                return outage_line(
                    step.name,
                    circuit.state,
                    circuit.down_s,
                    circuit.max_outage_s,
                    circuit.last_error,
                )
        return ""

    def _emitter(self) -> Callable[[Any], Any] | None:
        """Return how an output is handed on: collected, given to the callable sink, or
        (``None``) only to the durable sink."""
        if self.sink is not None:
            return self.sink
        if self.session is not None:
            return None
        return self.outputs.append

    async def _lane(self, handler: Callable[[Any], Any], emit: Callable[[Any], Any] | None) -> None:
        sequencer = self.sequencer
        sink_is_async = self.sink is not None and (
            inspect.iscoroutinefunction(self.sink)
            or inspect.iscoroutinefunction(getattr(self.sink, "__call__", None))  # noqa: B004
        )
        writer = self.session.writer if self.session is not None else None
        encode = self.session.sink.encode if self.session is not None else None
        keyed = self.keyed
        feed = self.feed
        pull, pull_async, is_async_source = feed.pull, feed.pull_async, feed.is_async
        key: str | None = None
        while True:
            if perf_counter() - self.loop_ran > HOGGED_S:
                # a step that never suspends (a sync function called inline, a source read
                # without waiting) would otherwise hold the loop for the whole run: the
                # writer could not commit, nor the lease be renewed, until the end
                await asyncio.sleep(0)
            # drop the last item before waiting for the next: one item per lane at most
            item = out = None
            item = (await pull_async()) if is_async_source else pull()
            if item is END:
                break
            if keyed:
                index, key, item = item
                if item is DUPLICATE:
                    self.n_duplicate += 1
                    if writer is not None:
                        wait = writer.duplicate(index, key)
                        if wait is not None:
                            await wait
                    continue
                if type(item) is BadRecord:
                    if self.on_bad_input == "stop":
                        feed.stop(BadInput(f"{item.where}: {item.reason}"))
                        break
                    self.n_in += 1
                    failure = StepFailed("<source>", BadInput(f"{item.where}: {item.reason}"))
                    await self._record_dead(index, key, item.raw, failure)
                    continue
            else:
                index = self.n_in
            self.n_in += 1
            # tickets count the items run, in the order they were read (source indices
            # skip what a resume skips and what the source could not read)
            ticket = sequencer.ticket() if sequencer is not None else 0
            try:
                out = await handler(item)
            except StepFailed as failure:
                failure.index = index
                if sequencer is not None:
                    sequencer.done(ticket)
                stopped = run_stopped(failure)
                if stopped is not None:
                    # not an outcome: the item is left for a resume, and no new item starts
                    self.n_unfinished += 1
                    feed.stop()
                    self.stop_reason = self.stop_reason or str(stopped)
                    continue
                if self.on_error == "raise":
                    raise
                await self._record_dead(index, key, item, failure)
                continue
            if out is FILTERED:
                self.n_filtered += 1
                if sequencer is not None:
                    sequencer.done(ticket)
                if writer is not None:
                    wait = writer.filtered(index, key)  # type: ignore[arg-type]
                    if wait is not None:
                        await wait
                continue
            if sequencer is not None:
                await sequencer.wait_turn(ticket)
            if writer is not None:
                try:
                    record = encode(key, out)  # type: ignore[misc,arg-type]
                except (TypeError, ValueError) as exc:
                    if sequencer is not None:
                        sequencer.done(ticket)
                    await self._record_dead(index, key, item, StepFailed("<sink>", exc))
                    continue
            if emit is not None:
                handed = emit(out)
                if sink_is_async:
                    await handed
            if writer is not None:
                wait = writer.output(index, key, record)  # type: ignore[arg-type]
                if wait is not None:
                    await wait
            self.n_out += 1
            if sequencer is not None:
                sequencer.done(ticket)
        self.lanes_left -= 1
        if not self.lanes_left:
            self.finished.set()
            if writer is not None:
                writer.close()
        self.activity.leave()

    async def _tick(self) -> None:
        """Note, every :data:`TICK_S`, that the loop runs other tasks than the lanes."""
        finished = self.finished
        while not finished.is_set():
            self.loop_ran = perf_counter()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await finished.wait()

    async def _record_dead(
        self, index: int, key: str | None, item: Any, failure: StepFailed
    ) -> None:
        cause = failure.cause
        notes = [*getattr(cause, "__notes__", ()), *getattr(failure, "__notes__", ())]
        text = error_text(cause)
        message = f"{text} ({'; '.join(notes)})" if notes else text
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
