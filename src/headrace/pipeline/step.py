"""Steps: named units of work with their execution policies and a fingerprint."""

from __future__ import annotations

import abc
import copy
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from .._types import FILTERED
from ..errors import PipelineError
from ..limits.concurrency import AdaptiveConcurrency
from .fingerprint import code_hash
from .options import PROCESS_CHUNK, Batch, Executor, StepOptions

if TYPE_CHECKING:
    from .compose import Parallel, Sequence

__all__ = [
    "FILTERED",
    "PROCESS_CHUNK",
    "Batch",
    "Executor",
    "FunctionStep",
    "Step",
    "StepOptions",
    "as_step",
]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


class Step(abc.ABC, Generic[In, Out]):
    """A unit of work that turns one input into one output, or drops it.

    Steps compose: ``a >> b`` runs ``b`` on ``a``'s output; ``a | b`` runs both on
    the same input and yields a tuple of both outputs. A composition is a step too.

    Every step has a :attr:`name` and a :attr:`fingerprint`: a hash of what decides
    its results (its name, version, code and result-changing options, and those of
    the steps inside it). Execution policies (concurrency, executor, timeout,
    batch sizes) do not change it, so tuning them keeps caches and resumes valid.
    """

    name: str
    _fingerprint: str | None = None

    @overload
    def __rshift__(self: Step[A, B], other: Step[B, C]) -> Sequence[A, C]: ...

    @overload
    def __rshift__(self: Step[A, B], other: Callable[[B], C]) -> Sequence[A, C]: ...

    def __rshift__(self: Step[A, B], other: Any) -> Sequence[A, Any]:
        """``a >> b``: run ``b`` on each output of ``a``."""
        from .compose import Sequence

        return Sequence(self, as_step(other, after=self.name))

    def __rrshift__(self: Step[B, C], other: Callable[[A], B]) -> Sequence[A, C]:
        """``f >> step`` with a plain callable ``f`` on the left."""
        from .compose import Sequence

        return Sequence(as_step(other, after=None), self)

    @overload
    def __or__(self: Step[A, B], other: Step[A, C]) -> Parallel[A, B, C]: ...

    @overload
    def __or__(self: Step[A, B], other: Callable[[A], C]) -> Parallel[A, B, C]: ...

    def __or__(self: Step[A, B], other: Any) -> Parallel[A, B, Any]:
        """``a | b``: run both on the same input; the output is the tuple of both outputs."""
        from .compose import Parallel

        return Parallel.of(self, as_step(other, after=self.name))

    def __ror__(self: Step[A, C], other: Callable[[A], B]) -> Parallel[A, B, C]:
        """``f | step`` with a plain callable ``f`` on the left."""
        from .compose import Parallel

        return Parallel.of(as_step(other, after=None), self)

    def named(self, name: str) -> Self:
        """Return a copy of this step under another name (e.g. to tell merged branches apart)."""
        if not isinstance(name, str) or not name:
            raise PipelineError(f"a step's name must be a non-empty string, got {name!r}")
        renamed = copy.copy(self)
        renamed.name = name
        renamed._fingerprint = None
        return renamed

    @property
    def fingerprint(self) -> str:
        """A hex sha256 of everything that decides this step's results."""
        if self._fingerprint is None:
            identity = json.dumps(self._identity(), sort_keys=True, default=repr)
            self._fingerprint = hashlib.sha256(identity.encode()).hexdigest()
        return self._fingerprint

    def children(self) -> tuple[Step[Any, Any], ...]:
        """The steps this step is made of (empty for a leaf)."""
        return ()

    def local_only(self) -> str | None:
        """Why this step (or one inside it) can run only in the run's own process, not
        on a backend's workers; ``None`` when it can run anywhere."""
        return next(filter(None, (child.local_only() for child in self.children())), None)

    def requires(self) -> tuple[str, ...]:
        """The optional modules this step itself needs (``("torch", ...)``), checked
        before a run starts (see :mod:`headrace.loading.extras`); its children say their own."""
        cache = getattr(self, "cache", None)
        tiers = getattr(cache, "tiers", ())
        uses_redis = any(isinstance(tier, str) and tier.startswith("redis") for tier in tiers)
        return ("redis",) if uses_redis else ()

    def max_concurrency(self) -> int:
        """The largest number of items this step (or one inside it) may hold at once."""
        own = self._slots()
        inner = max((child.max_concurrency() for child in self.children()), default=0)
        return max(own, inner)

    def total_slots(self) -> int:
        """How many items in flight it takes to fill every slot of the steps inside this one.

        Steps in sequence add up; a composition where one item is in several
        branches at once (a fan-out) or in one of them (a router) overrides this.
        """
        return self._slots() + sum(child.total_slots() for child in self.children())

    def _slots(self) -> int:
        return 0

    def knobs(self) -> frozenset[str]:
        """The settings ``headrace bench`` may sweep on this step itself (not the steps
        inside it): ``concurrency``, ``batch`` (the most items per call), ``pack``."""
        return frozenset()

    def _tune(self, knob: str, value: int) -> None:
        """Set one of :meth:`knobs` to ``value``, in place (``headrace bench`` tunes a
        pipeline it loaded for itself). A knob changes no fingerprint.

        Raises:
            PipelineError: not one of this step's knobs, or a bad value.
        """
        raise PipelineError(f"step {self.name!r} has no setting {knob!r} to tune")

    @abc.abstractmethod
    def _identity(self) -> dict[str, Any]:
        """What identifies this step's results: hashed into :attr:`fingerprint`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FunctionStep(Step[In, Out]):
    """A step that calls one Python function: async, sync, or batched (``list -> list``).

    Built by :func:`step`; see there for the options. ``step.fn`` is the function
    itself, for calling it directly in a unit test. A step is deliberately not
    callable, so that the type checker never mistakes one for a plain function.
    """

    reports_requests: bool = False
    """The function is an LLM client's: it counts the 429s it receives and times each
    request itself (retries included), so the call path neither counts them again nor
    puts the whole call, rate-limit waits and retries included, in the latency."""

    def __init__(
        self, fn: Callable[..., Any], *, options: StepOptions | None = None, **values: Any
    ) -> None:
        if not callable(fn):
            raise PipelineError(f"a step needs a callable, got {type(fn).__name__}: {fn!r}")
        self.fn = fn
        # the output type the cache may rebuild entries as; None: the return annotation
        self.output_type: Any = None
        given = values.get("name", options.name if options is not None else None)
        self.name = given if given is not None else _callable_name(fn)
        if not isinstance(self.name, str) or not self.name:
            raise PipelineError(f"a step's name must be a non-empty string, got {self.name!r}")
        owner = f"step {self.name!r}"
        if options is None:
            options = StepOptions.checked(owner, **values)
        elif values:
            options = options.replace(owner, **values)
        self.options = options
        self.version = options.version
        self.executor: Executor = options.executor
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        if self.is_async and self.executor != "async":
            raise PipelineError(
                f"step {self.name!r} is an async function, which runs on the event loop; "
                f"executor={self.executor!r} is for sync functions"
            )
        adaptive = options.concurrency
        self.adaptive = adaptive if isinstance(adaptive, AdaptiveConcurrency) else None
        self.concurrency: int = options.slots
        self.timeout = options.timeout
        self.timeout_s = self.timeout.attempt_s if self.timeout is not None else None
        self.total_timeout_s = self.timeout.total_s if self.timeout is not None else None
        if self.timeout is not None and not self.is_async and self.executor == "async":
            raise PipelineError(
                f"step {self.name!r}: a timeout cannot interrupt a sync function running on "
                "the event loop; use executor='thread' or executor='process'"
            )
        self.ordered = options.ordered
        self.batch = options.batch
        self.validate = options.validate
        self.retry = options.retry
        self.rate = options.rate
        self.circuit = options.circuit
        if options.fallback is not None and options.fallback.step is self:
            raise PipelineError(f"step {self.name!r} cannot be its own fallback")
        self.fallback = options.fallback
        self.cache = options.cache

    def with_options(self, **changes: Any) -> FunctionStep[In, Out]:
        """Return a copy of this step with some options changed (e.g. ``name=``, ``concurrency=``).

        Raises:
            PipelineError: an unknown option, or an invalid value.
        """
        options = self.options.replace(f"step {self.name!r}", **{"name": self.name, **changes})
        return FunctionStep(self.fn, options=options)

    def knobs(self) -> frozenset[str]:
        return frozenset({"concurrency", "batch"} if self.batch else {"concurrency"})

    def _tune(self, knob: str, value: int) -> None:
        if knob not in self.knobs():
            super()._tune(knob, value)
        change: dict[str, Any] = {knob: value}
        if knob == "batch" and self.batch is not None:
            change["batch"] = Batch(max_size=value, max_wait=self.batch.max_wait_s)
        tuned = self.with_options(**change)
        self.options, self.batch, self.concurrency = tuned.options, tuned.batch, tuned.concurrency
        self.adaptive = tuned.adaptive

    @property
    def call_batch(self) -> Batch | None:
        """How items are grouped into calls: the step's ``batch``, or the process
        executor's chunks for a per-item step (:data:`PROCESS_CHUNK`), else ``None``."""
        return self.options.call_batch

    def _slots(self) -> int:
        grouping = self.call_batch
        return self.concurrency * (grouping.max_size if grouping is not None else 1)

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "function",
            "name": self.name,
            "version": self.version,
            "batched": self.batch is not None,
            "validate": self.validate,
            "code": code_hash(self.fn),
        }


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name != "<lambda>":
        return name
    if name == "<lambda>":
        return "lambda"
    return type(fn).__name__


def as_step(obj: Any, *, after: str | None) -> Step[Any, Any]:
    """Return ``obj`` as a step: steps pass through, plain callables are wrapped.

    Raises:
        PipelineError: ``obj`` is neither a step nor callable.
    """
    if isinstance(obj, Step):
        return obj
    if callable(obj):
        return FunctionStep(obj)
    where = f" after step {after!r}" if after else ""
    raise PipelineError(
        f"cannot compose {obj!r} ({type(obj).__name__}){where}: "
        "expected a step (made with @hr.step) or a callable"
    )


STEP_OPTIONS = StepOptions.NAMES
"""The options ``hr.step(...)`` takes."""
