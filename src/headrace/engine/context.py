"""What the steps of one run share (:class:`RunContext`), and the table of binders that
turns each kind of step into its handler in a run.

A :class:`~headrace.pipeline.step.Step` is configuration; binding it to a
:class:`RunContext` makes its *handler*: the coroutine function that carries one
item through it in this run, with this run's limiters, pools and metrics.

Which engine code runs a kind of step is a registry of binders, by step type: an
engine module says which declarations it runs with :func:`binds` (as Ray Data's
planner registers a plan function per logical operator), so a declaration module
never imports the engine: ``step.py`` does not know ``call.py``, nor ``graph.py``
``graph_run.py``; the LLM and model steps register theirs beside their
declarations (``llm/llm_step.py``, ``llm/routing.py``, ``models/model_step.py``), which sit
above the engine. :meth:`RunContext.bind` looks a step's type up here (its most
specific registered base wins): one table for every kind of step. The core
engine's binders are registered when ``run_loop.py`` (which makes each run's
context) imports their modules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._types import Handler
from ..errors import PipelineError
from ..limits.budget import RunSpend
from ..limits.circuit import Circuit, CircuitState
from ..limits.rate import Rate
from ..limits.rate_state import RateState
from ..metrics import StepMetrics
from .activity import Activity

if TYPE_CHECKING:
    from ..pipeline.step import Step

__all__ = ["Binder", "Handler", "RunContext", "binder_for", "binds"]


Binder = Callable[[Any, "RunContext"], Handler]
"""Makes a step's handler in one run: ``binder(step, ctx)``."""

_BINDERS: dict[type, Binder] = {}
B = TypeVar("B", bound=Binder)


def binds(kind: type) -> Callable[[B], B]:
    """Register the decorated function as the binder of ``kind`` (and its subclasses)."""

    def register(binder: B) -> B:
        _BINDERS[kind] = binder
        return binder

    return register


def binder_for(step: Any) -> Binder | None:
    """The binder registered for ``step``'s type or its nearest base, if any."""
    for kind in type(step).__mro__:
        binder = _BINDERS.get(kind)
        if binder is not None:
            return binder
    return None


class RunContext:
    """What the steps of one run share: activity, task spawning, metrics, resources.

    Args:
        activity: the run's count of running units.
        spawn: starts a task in the run's task group (so it never outlives the run).
        spend: the run's spending against its budget, if it has one.
        run_dir: the folder of a durable run (``None`` for a run kept nowhere), where a
            step may keep what must outlive the process (the batch tier's ledger).
        fence: renews a durable run's lease, raising ``LeaseLost`` when another session
            took the run over: awaited before an act no commit can take back.
        deadline_at: when the run's results are needed (Unix seconds), if it says.
    """

    def __init__(
        self,
        activity: Activity,
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
        spend: RunSpend | None = None,
        run_dir: Path | None = None,
        fence: Callable[[], Awaitable[None]] | None = None,
        deadline_at: float | None = None,
    ) -> None:
        self.activity = activity
        self.deadline_at = deadline_at
        self.spawn = spawn
        self.spend = spend
        self.run_dir = run_dir
        self.fence = fence
        self._shared: dict[Any, Any] = {}
        self.metrics: list[StepMetrics] = []
        self._handlers: dict[int, Handler] = {}
        self._names: set[str] = set()
        self._closers: list[Callable[..., None]] = []
        self._async_closers: list[Callable[[], Awaitable[None]]] = []

    def bind(self, step: Step[Any, Any]) -> Handler:
        """Return ``step``'s handler in this run, binding it on first use.

        A step object used in several places of a pipeline is bound once, so it
        shares one concurrency limit and one set of metrics.
        """
        handler = self._handlers.get(id(step))
        if handler is None:
            binder = binder_for(step)
            if binder is None:
                raise PipelineError(
                    f"{type(step).__name__} cannot run: no binder is registered for it "
                    "(see headrace.engine.context.binds)"
                )
            handler = binder(step, self)
            self._handlers[id(step)] = handler
        return handler

    def shared(self, key: Any, make: Callable[[], Any]) -> Any:
        """The run's one instance of a resource (e.g. an LLM client's connection pool),
        made by ``make()`` the first time a step asks for ``key``."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def circuit(self, settings: Circuit) -> CircuitState:
        """The run's state of the circuit ``settings`` (one per run, shared by every step
        and client of the run that carries it; a new run starts closed)."""
        state: CircuitState = self.shared(("circuit", id(settings)), settings.new_state)
        return state

    def rate(self, settings: Rate) -> RateState:
        """The run's state of the rate limit ``settings`` (one per run, shared by every
        step and client of the run that carries it; its Redis connection closes with
        the run)."""

        def make() -> RateState:
            state = RateState(settings)
            self.on_close_async(state.close)
            return state

        state: RateState = self.shared(("rate", id(settings)), make)
        return state

    def metrics_for(self, name: str, kind: str) -> StepMetrics:
        """Create the metrics of a step, with a name unique within the run."""
        unique, n = name, 1
        while unique in self._names:
            n += 1
            unique = f"{name}#{n}"
        self._names.add(unique)
        metrics = StepMetrics(name=unique, kind=kind)
        self.metrics.append(metrics)
        return metrics

    def on_close(self, closer: Callable[..., None]) -> None:
        """Call ``closer(aborted=...)`` when the run ends; true on error or cancel."""
        self._closers.append(closer)

    def on_close_async(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Await ``closer()`` when the run ends, before the plain closers run."""
        self._async_closers.append(closer)

    async def aclose(self) -> None:
        """Await the async closers, newest first; report the first error after all ran."""
        errors: list[BaseException] = []
        while self._async_closers:
            try:
                await self._async_closers.pop()()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self, *, aborted: bool) -> None:
        """Release every resource the run's steps opened, newest first."""
        errors: list[BaseException] = []
        while self._closers:
            closer = self._closers.pop()
            try:
                closer(aborted=aborted)
            except Exception as exc:  # close the rest before reporting
                errors.append(exc)
        if errors:
            raise errors[0]
