"""One item's way through a :class:`~headrace.pipeline.graph.Graph` (see its module's notes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from .._types import FILTERED
from ..errors import NoRoute, StepFailed
from ..pipeline.graph import OTHERWISE, Edge, Graph, names_of
from .activity import Activity
from .context import binds
from .tasks import first_leaf

if TYPE_CHECKING:
    from .._types import Handler
    from .context import RunContext

__all__ = ["ItemRun"]


class _Filtered(Exception):
    """Raised inside an item's task group when a node filtered the item out: it
    cancels the item's other branches the way a failure does."""


@binds(Graph)
def bind_graph(graph: Graph, ctx: RunContext) -> Handler:
    """A graph's handler in one run: each item goes its own way through the nodes."""
    handlers = {n: ctx.bind(spec.step) for n, spec in graph.nodes.items() if spec.step}
    counted = {
        n: ctx.metrics_for(n, "route" if spec.choose else "filter")
        for n, spec in graph.nodes.items()
        if spec.choose is not None or spec.keep is not None
    }
    activity = ctx.activity

    async def handle(record: Any) -> Any:
        return await ItemRun(graph, handlers, counted, activity, record).run()

    return handle


class ItemRun:
    """One item's way through a graph: a node runs when its parents are decided.

    Every branch of the item runs in one task group, so the first failure (or a
    filter) cancels the others and the item ends only when all of them have ended.
    A node's first ready child goes on in the same task (the first root in the
    caller's); other ready children get tasks of their own, each an activity unit.
    The last unit to end hands the caller's unit back, so the run's count never
    dips; the count is kept in done-callbacks, which run even for a task
    cancelled before its first step.
    """

    def __init__(
        self,
        graph: Graph,
        handlers: Mapping[str, Handler],
        counted: Mapping[str, Any],
        activity: Activity,
        record: Any,
    ) -> None:
        self.graph = graph
        self.handlers = handlers
        self.counted = counted
        self.activity = activity
        self.record = record
        self.outputs: dict[str, Any] = {}
        self.fired: set[tuple[str, str]] = set()
        self.waiting = graph.indegree.copy()
        self.live = 0
        self.failure: BaseException | None = None
        self.filtered = False
        self.group = asyncio.TaskGroup()

    async def run(self) -> Any:
        roots = self.graph.roots
        try:
            async with self.group:
                self.live = 1
                for root in roots[1:]:
                    self._start(root)
                try:
                    await self._chain(roots[0])  # the first root runs in the caller's task
                finally:
                    self._ended()
        except BaseExceptionGroup as group_error:
            if self.failure is None and not self.filtered:
                error = first_leaf(group_error)
                raise error from error.__cause__
        if self.failure is not None:
            raise self.failure
        if self.filtered:
            return FILTERED
        out = self.graph.output
        if isinstance(out, str):
            return self.outputs.get(out, FILTERED)
        return {n: self.outputs.get(n) for n in out}

    def _start(self, node_id: str) -> None:
        self.activity.enter()
        self.live += 1
        task = self.group.create_task(self._chain(node_id))
        task.add_done_callback(self._task_ended)

    def _task_ended(self, _task: asyncio.Task[None]) -> None:
        self._ended()

    def _ended(self) -> None:
        self.live -= 1
        if self.live:
            self.activity.leave()

    async def _chain(self, node_id: str) -> None:
        """Run ``node_id``, then go on with the first child it makes ready (the others
        get tasks of their own); the unit ends when no child is left to go on with."""
        while True:
            try:
                await self._execute(node_id)
            except BaseException as exc:  # kept, and raised by run()
                if self.failure is None and not isinstance(exc, asyncio.CancelledError):
                    self.failure = exc
                raise
            if self.failure is not None:
                return
            if self.filtered:
                raise _Filtered
            ready: list[str] = []
            for e in self.graph.children_of[node_id]:
                self.waiting[e.target] -= 1
                if self.waiting[e.target] == 0:
                    ready.append(e.target)
            if not ready:
                return
            for child in ready[1:]:
                self._start(child)
            node_id = ready[0]

    def _names(self, node_id: str, value: Any) -> dict[str, Any]:
        names = names_of(self.record)
        names["record"] = self.record
        outputs = self.outputs
        for above in self.graph.ancestors[node_id]:
            if above in outputs:
                names[above] = outputs[above]
        names["input"] = value
        return names

    async def _execute(self, node_id: str) -> None:
        graph = self.graph
        spec = graph.nodes[node_id]
        incoming = graph.parents[node_id]
        if incoming:
            fired = [e.source for e in incoming if (e.source, node_id) in self.fired]
            if not fired:
                return  # skipped: none of its edges fired
            outputs = self.outputs
            value = outputs[fired[0]] if len(incoming) == 1 else {p: outputs[p] for p in fired}
        else:
            value = self.record
        if spec.keep is not None:
            metrics = self.counted[node_id]
            metrics.calls += 1
            keep = self._decide(node_id, spec.keep, self._names(node_id, value), metrics)
            metrics.items += 1
            if not keep:
                metrics.filtered += 1
                self.filtered = True
                return
        if spec.step is not None:
            argument = self._names(node_id, value) if spec.input == "context" else value
            out = await self.handlers[node_id](argument)
            if out is FILTERED:
                self.filtered = True
                return
        else:
            out = value
        self.outputs[node_id] = out
        leaving = graph.children_of[node_id]
        if not leaving:
            return
        names = self._names(node_id, value)
        names[node_id] = names["output"] = out
        if spec.choose is not None:
            self._route(node_id, spec.choose, names, leaving)
            return
        for e in leaving:
            if e.when is None or self._decide(f"{e.source} -> {e.target}", e.when, names, None):
                self.fired.add((node_id, e.target))

    def _route(
        self,
        node_id: str,
        choose: Callable[[Mapping[str, Any]], Hashable],
        names: dict[str, Any],
        leaving: list[Edge],
    ) -> None:
        metrics = self.counted[node_id]
        metrics.calls += 1
        key = self._decide(node_id, choose, names, metrics)
        chosen = [e for e in leaving if e.branch == key and e.branch is not OTHERWISE]
        label = str(key)
        if not chosen:
            chosen = [e for e in leaving if e.branch is OTHERWISE]
            label = "otherwise"
        if not chosen:
            metrics.errors += 1
            branches = sorted(str(e.branch) for e in leaving)
            raise StepFailed(
                node_id,
                NoRoute(
                    f"the selector chose {key!r}, which is no branch ({branches}) "
                    "and there is no otherwise branch"
                ),
            )
        metrics.items += 1
        metrics.branches[label] = metrics.branches.get(label, 0) + 1
        self.fired.update((node_id, e.target) for e in chosen)

    @staticmethod
    def _decide(
        where: str, fn: Callable[[Mapping[str, Any]], Any], names: Mapping[str, Any], metrics: Any
    ) -> Any:
        try:
            return fn(names)
        except Exception as exc:
            if metrics is not None:
                metrics.errors += 1
            raise StepFailed(where, exc) from exc
