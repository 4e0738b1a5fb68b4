"""The driver of a run on a cluster: plans the shards, hands them to workers, takes a
shard back from a worker that died, shows one progress bar, and joins the result.

The driver holds the parent run's lease (one driver at a time); each shard's child
run has its own (one worker at a time). A worker that dies mid-shard leaves its
lease to the next worker that takes the shard, which resumes it: what the dead one
committed is kept, what it had in flight runs again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

from ..engine.result import DeadLetter, RunResult
from ..engine.run_options import Durability, Observing, RunOptions
from ..errors import HeadraceError, SinkDamaged
from ..io.keys import scan_repeats
from ..io.ranges import SourceRange
from ..io.records import KeyedSource, Source
from ..metrics import RunMetrics
from ..metrics.progress import Counts, run_progress
from ..metrics.run_data import outage_in
from ..store import StoreLocation
from ..store.dead_file import dead_row
from ..store.lease import BEAT_S
from ..store.session import Mode
from .shard_status import shard_states
from .shards import ShardPlan, shard_location
from .worker import ShardOutcome, ShardTask, ShardWorker

__all__ = ["Driver", "Workers"]

_log = logging.getLogger("headrace.run")

DEATHS_PER_SHARD = 3
"""A shard whose worker died this many times stops the run (it may be what kills it)."""


class Workers(Protocol):
    """What the driver reads of its backend (:class:`~headrace.cluster.backend.Ray`,
    which calls the driver: so the driver names only what it needs)."""

    @property
    def address(self) -> str | None:
        """The cluster joined (``None``: one started here)."""

    @property
    def workers(self) -> int:
        """Worker actors, each running one shard at a time."""

    @property
    def num_cpus(self) -> float:
        """CPUs reserved for each worker."""

    @property
    def num_gpus(self) -> float:
        """GPUs reserved for each worker."""

    def connect(self) -> None:
        """Join (or start) the cluster."""

    def shard_size_for(self, total: int) -> int:
        """The shard size for a source of ``total`` items."""


def _worker_env(backend: Workers) -> dict[str, Any]:
    """What the workers' environment takes from this process: on a cluster of this
    machine, what this process imports (the pipeline's modules, a recipe's ``paths:``:
    its ``sys.path`` is their PYTHONPATH; a remote cluster's nodes have their own,
    ``hr.Ray(runtime_env=...)``); on any cluster, the ``OTEL_*`` settings, so each
    shard exports to the collector this run was told of."""
    env = {name: value for name, value in os.environ.items() if name.startswith("OTEL_")}
    if backend.address is None:
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry or ".") for entry in sys.path)
    return {"runtime_env": {"env_vars": env}} if env else {}


class Driver:
    """Hands the shards of one session to a pool of workers until each has finished."""

    def __init__(
        self,
        backend: Workers,
        blob: bytes,
        source: Source,
        sink: Any,
        options: RunOptions,
        parent: StoreLocation,
        plan: ShardPlan,
    ) -> None:
        self.backend = backend
        self.blob = blob
        self.source = source
        self.sink = sink
        self.options = options
        self.parent = parent
        self.plan = plan
        self.metrics = RunMetrics()
        self.dead: list[DeadLetter] = []
        self.deaths: dict[int, int] = {}
        self.rebuilding: set[int] = set()  # shards whose part of the sink is damaged
        self.slots: dict[str, int] = {}
        self.done_before = 0
        self.finished_now: dict[int, tuple[int, int]] = {}  # shard -> (finished, dead)
        self.running_now: dict[int, tuple[int, int]] = {}  # the same, so far, of running ones
        self.outage = ""  # a running shard's outage line (see progress_of)
        self.before: dict[int, tuple[int, int]] = {}  # what a shard had finished before
        # per shard, its positions whose key an earlier record of the source has
        self.repeats: list[dict[int, str]] | None = None
        budget = options.budget
        if budget is not None and budget.key is None:
            # one budget for this session's workers (a resumed run has the budget it is given)
            budget = dataclasses.replace(budget, key=f"session:{uuid.uuid4().hex}")
        self.budget = budget

    def task(self, index: int, mode: Mode) -> ShardTask:
        """Shard ``index``'s task, to run in ``mode``."""
        start, stop = self.plan.bounds[index]
        options = self.options
        location = shard_location(self.parent, index)
        return ShardTask(
            index=index,
            start=start,
            source=SourceRange(
                self.source, start, stop, self.repeats[index] if self.repeats else None
            ),
            sink=self.sink.for_shard(index),
            # the run's window, order and failure policies; a durability of its own; the
            # dead letters counted against max_dead once, for the whole run, by the driver
            options=dataclasses.replace(
                options,
                key=None,
                backend=None,
                budget=self.budget,
                durability=Durability.for_mode(
                    mode,
                    run_dir=str(location.run_dir),
                    run_store=options.durability.run_store,
                    overwrite=True,  # the driver checked the sink once for the whole run
                    force=options.durability.force,
                    rebuild_sink=index in self.rebuilding,
                ),
                failures=dataclasses.replace(options.failures, max_dead=None),
                observing=Observing(progress=False),
            ),
        )

    def todo(self, mode: Mode) -> deque[tuple[int, Mode]]:
        """The shards this session runs, each with the mode of its first attempt."""
        states = shard_states(self.parent, self.plan)
        # the progress bar counts what a running shard commits beyond this (a fresh
        # shard's old store counts until its worker empties it: never more than the truth)
        self.before = {s.index: (s.finished, s.dead) for s in states}
        if mode in ("new", "fresh"):
            return deque((s.index, "fresh") for s in states)
        if mode == "retry_dead":
            return deque((s.index, "retry_dead") for s in states if s.dead)
        self.done_before = sum(s.finished for s in states if s.complete)
        self.metrics.items_skipped = self.done_before
        return deque((s.index, "auto") for s in states if not s.complete)

    async def run(self, mode: Mode, heartbeat: Callable[[], None]) -> RunResult:
        """Run every shard that is not finished; return the merged result."""
        import ray
        from ray.exceptions import RayActorError

        pending = self.todo(mode)
        self.backend.connect()
        remote: Any = ray.remote(ShardWorker).options(
            num_cpus=self.backend.num_cpus,
            num_gpus=self.backend.num_gpus,
            max_restarts=0,
            **_worker_env(self.backend),
        )
        idle = [remote.remote(self.blob) for _ in range(min(self.backend.workers, len(pending)))]
        if idle and not self.source.keys_unique and len(self.plan.bounds) > 1:
            source = self.source
            if isinstance(source, KeyedSource) and isinstance(source.items, Sequence):
                # a list is in this process already: scan it here rather than ship it
                found = scan_repeats(source.records(), self.options.failures.duplicates)
            else:
                found = await self.scan(idle[0], heartbeat)
            self.repeats = self.plan.split_repeats(found)
        running: dict[Any, tuple[Any, int, Mode]] = {}
        finished = asyncio.Event()
        shown = (
            asyncio.create_task(run_progress(self.counts, finished))
            if self.options.observing.progress
            else None
        )
        beat = time.monotonic()
        try:
            while pending or running:
                while idle and pending:
                    actor = idle.pop()
                    index, shard_mode = pending.popleft()
                    ref = actor.run.remote(self.task(index, shard_mode))
                    running[ref] = (actor, index, shard_mode)
                ready, _ = await asyncio.to_thread(
                    ray.wait, list(running), num_returns=1, timeout=1.0
                )
                if time.monotonic() - beat >= BEAT_S:
                    heartbeat()
                    beat = time.monotonic()
                if shown is not None:
                    now_running = [index for _, index, _ in running.values()]
                    self.running_now = await asyncio.to_thread(self.progress_of, now_running)
                for ref in ready:
                    actor, index, shard_mode = running.pop(ref)
                    try:
                        outcome: ShardOutcome = ray.get(ref)
                    except RayActorError as exc:
                        idle.append(remote.remote(self.blob))
                        pending.appendleft((index, self.after_death(index, shard_mode, exc)))
                        continue
                    idle.append(actor)
                    again = self.take(outcome, shard_mode)
                    if self.metrics.stopped:
                        pending.clear()  # the budget is spent: no shard starts after it
                    if again is not None:
                        pending.append(again)
                        if outcome.state == "busy":
                            await asyncio.sleep(1.0)
        finally:
            finished.set()
            if shown is not None:
                await shown
            for actor, _, _ in running.values():
                ray.kill(actor)
            for actor in idle:
                ray.kill(actor)
        for step in self.metrics.steps:
            step.slots = self.slots.get(step.name, 0) * self.backend.workers
        return RunResult([], self.dead, self.metrics)

    async def scan(self, worker: Any, heartbeat: Callable[[], None]) -> dict[int, str]:
        """The positions of the source whose key repeats an earlier one, found by one
        worker reading the whole source: a shard sees only its own records, so a key
        that repeats across shards is caught here, and the duplicate-key policy
        treats it as a run on one machine would."""
        import ray

        _log.info("headrace: reading the keys of the whole source for repeats")
        ref = worker.scan.remote(self.source, self.options.failures.duplicates)
        while not (await asyncio.to_thread(ray.wait, [ref], num_returns=1, timeout=BEAT_S))[0]:
            heartbeat()
        repeats: dict[int, str] = ray.get(ref)
        return repeats

    def after_death(self, index: int, mode: Mode, error: BaseException) -> Mode:
        """A worker died running shard ``index``: the mode to run it again in.

        Raises:
            HeadraceError: its workers died :data:`DEATHS_PER_SHARD` times.
        """
        deaths = self.deaths[index] = self.deaths.get(index, 0) + 1
        if deaths >= DEATHS_PER_SHARD:
            raise HeadraceError(
                f"shard {index} (items {self.plan.bounds[index][0]:,} to "
                f"{self.plan.bounds[index][1] - 1:,}) lost its worker {deaths} times; the run "
                f"stops, what finished is kept (last: {str(error).splitlines()[0][:200]})"
            )
        _log.warning(
            "headrace: a worker died running shard %s; it runs again on another worker "
            "(what was committed is kept)",
            index,
        )
        return "auto" if mode == "fresh" else mode

    def take(self, outcome: ShardOutcome, mode: Mode) -> tuple[int, Mode] | None:
        """Record a shard's outcome; return the shard to run again, if it must.

        Raises:
            BaseException: the shard failed (the error raised in the worker).
        """
        index = outcome.index
        if outcome.state == "busy":
            return index, "auto" if mode == "fresh" else mode
        error = outcome.error
        if outcome.state == "failed":
            if (
                isinstance(error, SinkDamaged)
                and self.options.durability.rebuild_sink
                and index not in self.rebuilding
            ):
                self.rebuilding.add(index)  # its next attempt sets its part aside
                return index, "auto"
            assert error is not None
            raise error
        metrics = outcome.metrics
        assert metrics is not None
        for step in metrics.steps:
            self.slots[step.name] = max(self.slots.get(step.name, 0), step.slots)
        self.metrics.merge(metrics)
        self.dead.extend(outcome.dead_letters)
        finished = metrics.items_out + metrics.items_dead + metrics.items_filtered
        self.finished_now[index] = (finished, metrics.items_dead)
        return None

    def progress_of(self, indexes: list[int]) -> dict[int, tuple[int, int]]:
        """Items finished (and of them dead) in this session so far by the running
        shards ``indexes``, read from their stores (what their workers committed); the
        first outage their latest samples show becomes :attr:`outage`."""
        seen: dict[int, tuple[int, int]] = {}
        outage = ""
        for index in indexes:
            location = shard_location(self.parent, index)
            try:
                if not location.exists():
                    continue
                store = location.open()
                try:
                    status = store.status()
                    latest = store.latest_sample() if not outage else None
                finally:
                    store.close()
            except Exception:  # a store its worker is creating: read it next time
                continue
            if latest is not None:
                outage = outage_in(latest.data)
            done, dead = self.before.get(index, (0, 0))
            seen[index] = (max(0, status.finished - done), max(0, status.dead - dead))
        self.outage = outage
        return seen

    def counts(self) -> Counts:
        """What the progress bar shows: the shards finished this session, what the
        running ones have committed so far, and the shards finished before."""
        finished = dict(self.running_now)
        finished.update(self.finished_now)
        done = sum(f for f, _ in finished.values())
        dead = sum(d for _, d in finished.values())
        return Counts(done, dead, self.plan.total, self.done_before, self.outage)

    def dead_letter_rows(self) -> Generator[dict[str, Any], None, None]:
        """Every dead letter of the run, read from the shards' stores, in source order."""
        for index, (start, _) in enumerate(self.plan.bounds):
            location = shard_location(self.parent, index)
            if not location.exists():
                continue
            store = location.open()
            try:
                for dead in store.iter_dead_letters():
                    yield dead_row(dead, start)
            finally:
                store.close()
