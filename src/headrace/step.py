"""Steps: named units of work with their execution policies and a fingerprint."""

from __future__ import annotations

import abc
import copy
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Self, TypeVar, overload

from ._types import FILTERED
from .cache import Cache
from .durations import to_seconds
from .errors import PipelineError, check_options, positive_int
from .fingerprint import code_hash
from .limits.circuit import Circuit
from .limits.concurrency import AdaptiveConcurrency
from .limits.policies import Fallback, Timeout
from .limits.rate import Rate
from .limits.retry import Retry

if TYPE_CHECKING:
    from .compose import Parallel, Sequence
    from .runtime import Handler, RunContext

__all__ = [
    "FILTERED",
    "PROCESS_CHUNK",
    "Batch",
    "Executor",
    "FunctionStep",
    "Step",
    "as_step",
    "step",
]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
P = TypeVar("P")

Executor = Literal["async", "thread", "process"]
_EXECUTORS: Final = ("async", "thread", "process")


class Batch:
    """How a batched step's calls are formed: up to ``max_size`` items, waiting ``max_wait``.

    A batched step's function takes a list of inputs and returns a list of outputs of
    the same length and order. Items arriving one at a time are coalesced by a
    micro-batcher; a partial batch is sent after ``max_wait``, and at once when no
    more items can reach the step.

    Args:
        max_size: the most items in one call (at least 1).
        max_wait: how long the first item of a partial batch may wait, in seconds
            or as a string such as ``"10ms"``.

    Raises:
        PipelineError: an argument is out of range.
    """

    __slots__ = ("max_size", "max_wait_s")

    def __init__(self, max_size: int = 64, max_wait: float | str = "10ms") -> None:
        positive_int(max_size, "Batch max_size")
        self.max_size = max_size
        self.max_wait_s = to_seconds(max_wait, option="Batch max_wait")

    def __repr__(self) -> str:
        return f"Batch(max_size={self.max_size}, max_wait={self.max_wait_s:g})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and (self.max_size, self.max_wait_s) == (
            other.max_size,
            other.max_wait_s,
        )

    def __hash__(self) -> int:
        return hash((self.max_size, self.max_wait_s))


PROCESS_CHUNK: Final = Batch(max_size=16, max_wait="5ms")
"""How a per-item step on the process executor sends items to its workers: in chunks
of up to 16, so the cost of crossing a process boundary is paid once per chunk."""


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

    @abc.abstractmethod
    def _identity(self) -> dict[str, Any]:
        """What identifies this step's results: hashed into :attr:`fingerprint`."""

    def _bind(self, ctx: RunContext) -> Handler:
        """Return the coroutine function that runs one item through this step in ``ctx``.

        The core engine binds its step types from outside (see
        :mod:`headrace.binding`); other step types define this.
        """
        raise PipelineError(f"{type(self).__name__} cannot run: no binder is registered for it")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _default_concurrency(executor: str, batched: bool) -> int:
    cpus = os.cpu_count() or 1
    if executor == "process":
        return cpus
    if batched:
        return 1  # one batch call at a time, as a model on one device wants
    if executor == "thread":
        return min(32, cpus + 4)
    return 64


class FunctionStep(Step[In, Out]):
    """A step that calls one Python function: async, sync, or batched (``list -> list``).

    Built by :func:`step`; see there for the options. ``step.fn`` is the function
    itself, for calling it directly in a unit test. A step is deliberately not
    callable, so that the type checker never mistakes one for a plain function.
    """

    reports_throttles: bool = False
    """The function counts the 429s it receives in the step's metrics itself (as the
    LLM client does, retries included), so the call path does not count them again."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        version: str = "1",
        concurrency: int | AdaptiveConcurrency | None = None,
        executor: Executor = "async",
        timeout: float | str | Timeout | None = None,
        ordered: bool = False,
        batch: Batch | None = None,
        validate: bool = False,
        retry: Retry | None = None,
        rate: Rate | None = None,
        circuit: Circuit | None = None,
        fallback: Fallback | Step[Any, Any] | None = None,
        cache: bool | Cache | None = None,
    ) -> None:
        if not callable(fn):
            raise PipelineError(f"a step needs a callable, got {type(fn).__name__}: {fn!r}")
        self.fn = fn
        # the output type the cache may rebuild entries as; None: the return annotation
        self.output_type: Any = None
        self.name = name if name is not None else _callable_name(fn)
        if not isinstance(self.name, str) or not self.name:
            raise PipelineError(f"a step's name must be a non-empty string, got {self.name!r}")
        self.version = str(version)
        if executor not in _EXECUTORS:
            raise PipelineError(
                f"step {self.name!r}: executor must be one of {', '.join(_EXECUTORS)}, "
                f"got {executor!r}"
            )
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        if self.is_async and executor != "async":
            raise PipelineError(
                f"step {self.name!r} is an async function, which runs on the event loop; "
                f"executor={executor!r} is for sync functions"
            )
        self.executor: Executor = executor
        self.adaptive: AdaptiveConcurrency | None = None
        slots: int | None
        if isinstance(concurrency, AdaptiveConcurrency):
            self.adaptive = concurrency
            if executor == "process" or batch is not None:
                raise PipelineError(
                    f"step {self.name!r}: AdaptiveConcurrency moves the limit of calls made "
                    "once per item; batched steps and the process executor take an integer"
                )
            slots = concurrency.max
        else:
            slots = concurrency
        self.concurrency: int = (
            _default_concurrency(executor, batch is not None) if slots is None else slots
        )
        positive_int(self.concurrency, f"step {self.name!r}: concurrency")
        limits = None
        if isinstance(timeout, Timeout):
            limits = timeout
        elif timeout is not None:
            try:
                limits = Timeout(attempt=timeout)
            except PipelineError as exc:
                raise PipelineError(f"step {self.name!r}: {exc}") from None
        self.timeout = limits
        self.timeout_s = limits.attempt_s if limits is not None else None
        self.total_timeout_s = limits.total_s if limits is not None else None
        if limits is not None and not self.is_async and executor == "async":
            raise PipelineError(
                f"step {self.name!r}: a timeout cannot interrupt a sync function running on "
                "the event loop; use executor='thread' or executor='process'"
            )
        self.ordered = bool(ordered)
        if batch is not None and not isinstance(batch, Batch):
            raise PipelineError(
                f"step {self.name!r}: batch must be hr.Batch(max_size=..., max_wait=...), "
                f"got {batch!r}"
            )
        self.batch = batch
        self.validate = bool(validate)
        self.retry = self._per_call_policy("retry", retry, Retry, "hr.Retry(attempts=..., ...)")
        self.rate = self._per_call_policy(
            "rate", rate, Rate, "hr.Rate(requests=..., per=...) or hr.Rate.auto()"
        )
        self.circuit = self._per_call_policy("circuit", circuit, Circuit, "hr.Circuit(...)")
        if isinstance(fallback, Step):
            fallback = Fallback(fallback)
        if fallback is not None and not isinstance(fallback, Fallback):
            raise PipelineError(
                f"step {self.name!r}: fallback must be a step or hr.Fallback(step), "
                f"got {fallback!r}"
            )
        if fallback is not None and fallback.step is self:
            raise PipelineError(f"step {self.name!r} cannot be its own fallback")
        self.fallback = fallback
        if cache is True:
            cache = Cache()
        elif cache is False:
            cache = None
        if cache is not None and not isinstance(cache, Cache):
            raise PipelineError(
                f"step {self.name!r}: cache must be True or hr.Cache(...), got {cache!r}"
            )
        self.cache = cache

    def _per_call_policy(self, option: str, value: P | None, kind: type[P], shape: str) -> P | None:
        """Check a policy that acts on each call of a per-item step (retry, rate, circuit)."""
        if value is None:
            return None
        if not isinstance(value, kind):
            raise PipelineError(f"step {self.name!r}: {option} must be {shape}, got {value!r}")
        if self.call_batch is not None:
            raise PipelineError(
                f"step {self.name!r}: {option}= acts on calls made once per item; batched "
                "steps and the process executor cannot carry it yet"
            )
        return value

    def with_options(self, **changes: Any) -> FunctionStep[In, Out]:
        """Return a copy of this step with some options changed (e.g. ``name=``, ``concurrency=``).

        Raises:
            PipelineError: an unknown option, or an invalid value.
        """
        options: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "concurrency": self.adaptive or self.concurrency,
            "executor": self.executor,
            "timeout": self.timeout,
            "ordered": self.ordered,
            "batch": self.batch,
            "validate": self.validate,
            "retry": self.retry,
            "rate": self.rate,
            "circuit": self.circuit,
            "fallback": self.fallback,
            "cache": self.cache,
        }
        check_options(changes, options, f"step {self.name!r}")
        if "executor" in changes and "concurrency" not in changes:
            options["concurrency"] = None
        options.update(changes)
        return FunctionStep(self.fn, **options)

    @property
    def call_batch(self) -> Batch | None:
        """How items are grouped into calls: the step's ``batch``, or the process
        executor's chunks for a per-item step (:data:`PROCESS_CHUNK`), else ``None``."""
        if self.batch is not None:
            return self.batch
        return PROCESS_CHUNK if self.executor == "process" else None

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


class _StepDecorator:
    """The decorator returned by ``hr.step(...)`` with options."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    @overload
    def __call__(self, fn: Callable[[A], Coroutine[Any, Any, B]]) -> FunctionStep[A, B]: ...

    @overload
    def __call__(self, fn: Callable[[A], B]) -> FunctionStep[A, B]: ...

    def __call__(self, fn: Callable[[A], Any]) -> FunctionStep[A, Any]:
        return FunctionStep(fn, **self._options)


class _BatchStepDecorator:
    """The decorator returned by ``hr.step(batch=...)``: the function maps a list to a list."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    @overload
    def __call__(
        self, fn: Callable[[list[A]], Coroutine[Any, Any, list[B]]]
    ) -> FunctionStep[A, B]: ...

    @overload
    def __call__(self, fn: Callable[[list[A]], list[B]]) -> FunctionStep[A, B]: ...

    def __call__(self, fn: Callable[[list[A]], Any]) -> FunctionStep[A, Any]:
        return FunctionStep(fn, **self._options)


@overload
def step(fn: Callable[[A], Coroutine[Any, Any, B]], /) -> FunctionStep[A, B]: ...


@overload
def step(fn: Callable[[A], B], /) -> FunctionStep[A, B]: ...


@overload
def step(
    *,
    name: str | None = None,
    version: str = "1",
    concurrency: int | AdaptiveConcurrency | None = None,
    executor: Executor = "async",
    timeout: float | str | Timeout | None = None,
    ordered: bool = False,
    batch: None = None,
    validate: bool = False,
    retry: Retry | None = None,
    rate: Rate | None = None,
    circuit: Circuit | None = None,
    fallback: Fallback | Step[Any, Any] | None = None,
    cache: bool | Cache | None = None,
) -> _StepDecorator: ...


@overload
def step(
    *,
    name: str | None = None,
    version: str = "1",
    concurrency: int | None = None,
    executor: Executor = "async",
    timeout: float | str | Timeout | None = None,
    ordered: bool = False,
    batch: Batch,
    validate: bool = False,
    retry: None = None,
    rate: None = None,
    circuit: None = None,
    fallback: Fallback | Step[Any, Any] | None = None,
    cache: bool | Cache | None = None,
) -> _BatchStepDecorator: ...


def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Turn a function into a :class:`Step`; use as ``@hr.step`` or ``@hr.step(...)``.

    Args:
        name: the step's name in metrics and errors (default: the function's name).
        version: bump it to mark a change of behaviour the code hash cannot see;
            part of the fingerprint.
        concurrency: the most calls in flight at once (a batch counts as one call).
            Default: the CPU count for ``process``; 1 for a batched step otherwise;
            64 for ``async`` and min(32, CPUs + 4) for ``thread``. Or an
            :class:`~headrace.limits.concurrency.AdaptiveConcurrency`, which moves
            the limit with the latency and 429s seen (per-item steps).
        executor: where the function runs. ``"async"``: on the event loop (an async
            function is awaited, a sync one is called inline: keep it fast).
            ``"thread"``: a thread pool, for blocking I/O. ``"process"``: a process
            pool, for CPU-bound Python; items travel to it in chunks.
        timeout: the most one call may take (seconds or ``"500ms"``); a call that takes
            longer fails the item with :class:`~headrace.errors.StepTimeout`. Or an
            :class:`~headrace.limits.policies.Timeout`, which can also bound an
            item's whole time in the step, retries included.
        ordered: emit items from this step in the order they entered it.
        batch: make this a batched step (``list -> list``), see :class:`Batch`.
        validate: check each output against the function's return annotation.
        retry: retry failed calls, see :class:`~headrace.limits.retry.Retry`
            (per-item steps on the ``async`` or ``thread`` executor).
        rate: keep a provider's rate limit, see :class:`~headrace.limits.rate.Rate`
            (per-item steps on the ``async`` or ``thread`` executor); the limit is
            waited for after the concurrency slot is taken, for every attempt.
        circuit: fail fast while the provider is down, see
            :class:`~headrace.limits.circuit.Circuit` (per-item steps).
        fallback: a step (or :class:`~headrace.limits.policies.Fallback`) to run on
            the item when this one has failed, its attempts spent.
        cache: ``True`` (memory, then the project's SQLite file) or a
            :class:`~headrace.cache.Cache`: a result already computed for an equal
            input (by this step's fingerprint) is returned without calling the
            function, and identical calls in flight at once are joined.

    Returns:
        A :class:`FunctionStep`, or a decorator that makes one.

    Raises:
        PipelineError: an option is invalid (raised where the step is defined).
    """
    check_options(options, STEP_OPTIONS, "hr.step")
    if fn is not None:
        return FunctionStep(fn, **options)
    # the values are checked where the function is decorated, so that an error names it
    if options.get("batch") is not None:
        return _BatchStepDecorator(options)
    return _StepDecorator(options)


STEP_OPTIONS = frozenset(inspect.signature(FunctionStep.__init__).parameters) - {"self", "fn"}
"""The options ``hr.step(...)`` takes."""
