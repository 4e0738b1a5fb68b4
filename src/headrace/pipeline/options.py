"""A step's options, their defaults and their checks, in one place.

:class:`StepOptions` is what ``@hr.step(...)``, :class:`~headrace.pipeline.step.FunctionStep`,
``with_options``, the LLM and model steps and the recipe builder all build a step's
options with: each option is checked and normalised once, here (``"500ms"``
becomes a :class:`~headrace.limits.policies.Timeout`, ``cache=True`` a
:class:`~headrace.cache.Cache`, a fallback step a
:class:`Fallback`), and a bad value raises
:class:`~headrace.errors.PipelineError` naming the step and the option.
What depends on the function itself (an async function on another executor, a
timeout that cannot interrupt a sync function on the event loop) is checked by
the step that holds it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from ..cache import Cache
from ..errors import PipelineError
from ..limits.circuit import Circuit
from ..limits.concurrency import AdaptiveConcurrency
from ..limits.policies import Timeout
from ..limits.rate import Rate
from ..limits.retry import Retry
from ..values.checks import check_options, positive_int
from ..values.durations import to_seconds

__all__ = ["EXECUTORS", "PROCESS_CHUNK", "Batch", "Executor", "Fallback", "StepOptions"]

Executor = Literal["async", "thread", "process"]
EXECUTORS: Final = ("async", "thread", "process")


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


def default_concurrency(executor: str, batched: bool) -> int:
    """A step's concurrency when none is given (see :class:`StepOptions`)."""
    cpus = os.cpu_count() or 1
    if executor == "process":
        return cpus
    if batched:
        return 1  # one batch call at a time, as a model on one device wants
    if executor == "thread":
        return min(32, cpus + 4)
    return 64


@dataclass(frozen=True, slots=True)
class Fallback:
    """Run another step on the item when this one has failed (its attempts spent).

    The fallback's output takes the place of the step's. If the fallback fails
    too, the item's dead letter is the fallback's error, with a note naming the
    first failure.

    Args:
        step: the step to run instead (made with ``@hr.step``; checked here, typed
            ``Any`` because ``step.py`` imports this module and not the other way).
        when: which failures fall back, a predicate of the exception (default: all).
    """

    step: Any
    when: Callable[[BaseException], bool] = field(default=lambda error: True)

    def __post_init__(self) -> None:
        if not _is_step(self.step):
            raise PipelineError(f"Fallback takes a step (made with @hr.step), got {self.step!r}")
        if not callable(self.when):
            raise PipelineError("Fallback when= must be a function of the exception")


def _is_step(value: Any) -> bool:
    """Whether ``value`` is a :class:`~headrace.pipeline.step.Step`, told by its class's bases by
    name: ``step.py`` imports this module, so this one cannot import it back."""
    return any(
        k.__name__ == "Step" and k.__module__ == "headrace.pipeline.step"
        for k in type(value).__mro__
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOptions:
    """A step's options, checked and normalised. Build them with :meth:`checked`.

    Attributes:
        name: the step's name in metrics and errors (``None``: the function's name).
        version: bump it to mark a change of behaviour the code hash cannot see;
            part of the fingerprint.
        concurrency: the most calls in flight at once (a batch counts as one call),
            or an :class:`~headrace.limits.concurrency.AdaptiveConcurrency`, which
            moves the limit with the latency and 429s seen (per-item steps).
            ``None``: the CPU count for ``process``; 1 for a batched step otherwise;
            64 for ``async`` and min(32, CPUs + 4) for ``thread``
            (:attr:`slots` is the number).
        executor: where the function runs. ``"async"``: on the event loop (an async
            function is awaited, a sync one is called inline: keep it fast).
            ``"thread"``: a thread pool, for blocking I/O. ``"process"``: a process
            pool, for CPU-bound Python; items travel to it in chunks.
        timeout: the most one call may take, given as seconds, ``"500ms"`` or a
            :class:`~headrace.limits.policies.Timeout` (which can also bound an
            item's whole time in the step, retries included); a call that takes
            longer fails the item with :class:`~headrace.errors.StepTimeout`.
        ordered: emit items from this step in the order they entered it.
        batch: make this a batched step (``list -> list``), see :class:`Batch`.
        validate: check each output against the function's return annotation.
        retry: retry failed calls, see :class:`~headrace.limits.retry.Retry`
            (per-item steps on the ``async`` or ``thread`` executor).
        rate: keep a provider's rate limit, see :class:`~headrace.limits.rate.Rate`
            (per-item steps); the limit is waited for after the concurrency slot
            is taken, for every attempt.
        circuit: fail fast while the provider is down, see
            :class:`~headrace.limits.circuit.Circuit` (per-item steps).
        fallback: a step (given bare or as a
            :class:`Fallback`) to run on the item when
            this one has failed, its attempts spent.
        cache: ``True`` (memory, then the project's SQLite file) or a
            :class:`~headrace.cache.Cache`: a result already computed for an equal
            input (by the step's fingerprint) is returned without calling the
            function, and identical calls in flight at once are joined.
    """

    name: str | None = None
    version: str = "1"
    concurrency: int | AdaptiveConcurrency | None = None
    executor: Executor = "async"
    timeout: Timeout | None = None
    ordered: bool = False
    batch: Batch | None = None
    validate: bool = False
    retry: Retry | None = None
    rate: Rate | None = None
    circuit: Circuit | None = None
    fallback: Fallback | None = None
    cache: Cache | None = None

    NAMES: ClassVar[frozenset[str]]
    """Every option's name."""

    @classmethod
    def checked(cls, owner: str, **values: Any) -> StepOptions:
        """Options from keyword arguments, each checked and normalised.

        Args:
            owner: how errors name the step, e.g. ``"step 'classify'"``.
            **values: the options (see the class's attributes).

        Raises:
            PipelineError: an unknown option (with the nearest name) or a bad value.
        """
        check_options(values, cls.NAMES, owner)
        cache = values.get("cache")
        fallback = values.get("fallback")
        options = cls(
            **{
                **values,
                "version": str(values.get("version", "1")),
                "ordered": bool(values.get("ordered", False)),
                "validate": bool(values.get("validate", False)),
                "timeout": _timeout(values.get("timeout"), owner),
                "cache": Cache() if cache is True else None if cache is False else cache,
                "fallback": fallback
                if fallback is None or isinstance(fallback, Fallback)
                else _fallback(fallback, owner),
            }
        )
        options._check(owner)
        return options

    def replace(self, owner: str, **changes: Any) -> StepOptions:
        """These options with some changed, checked again. Changing the executor
        without a concurrency goes back to the new executor's default concurrency.

        Raises:
            PipelineError: an unknown option or a bad value.
        """
        check_options(changes, self.NAMES, owner)
        values = self.as_dict()
        if "executor" in changes and "concurrency" not in changes:
            values["concurrency"] = None
        return StepOptions.checked(owner, **{**values, **changes})

    def as_dict(self) -> dict[str, Any]:
        """The options by name (shallow: the policy objects themselves)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def call_batch(self) -> Batch | None:
        """How items are grouped into calls: the ``batch``, or the process
        executor's chunks for a per-item step (:data:`PROCESS_CHUNK`), else ``None``."""
        if self.batch is not None:
            return self.batch
        return PROCESS_CHUNK if self.executor == "process" else None

    @property
    def slots(self) -> int:
        """The concurrency as a number: the given one, the adaptive limit's most,
        or the executor's default."""
        if isinstance(self.concurrency, AdaptiveConcurrency):
            return self.concurrency.max
        if self.concurrency is None:
            return default_concurrency(self.executor, self.batch is not None)
        return self.concurrency

    def _check(self, owner: str) -> None:
        if not isinstance(self.name, str | None) or self.name == "":
            raise PipelineError(f"a step's name must be a non-empty string, got {self.name!r}")
        if self.executor not in EXECUTORS:
            raise PipelineError(
                f"{owner}: executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
            )
        if self.batch is not None and not isinstance(self.batch, Batch):
            raise PipelineError(
                f"{owner}: batch must be hr.Batch(max_size=..., max_wait=...), got {self.batch!r}"
            )
        if isinstance(self.concurrency, AdaptiveConcurrency):
            if self.call_batch is not None:
                raise PipelineError(
                    f"{owner}: AdaptiveConcurrency moves the limit of calls made once per "
                    "item; batched steps and the process executor take an integer"
                )
        else:
            positive_int(self.slots, f"{owner}: concurrency")
        if self.cache is not None and not isinstance(self.cache, Cache):
            raise PipelineError(f"{owner}: cache must be True or hr.Cache(...), got {self.cache!r}")
        for option, kind, shape in (
            ("retry", Retry, "hr.Retry(attempts=..., ...)"),
            ("rate", Rate, "hr.Rate(requests=..., per=...) or hr.Rate.auto()"),
            ("circuit", Circuit, "hr.Circuit(...)"),
        ):
            value = getattr(self, option)
            if value is None:
                continue
            if not isinstance(value, kind):
                raise PipelineError(f"{owner}: {option} must be {shape}, got {value!r}")
            if self.call_batch is not None:
                raise PipelineError(
                    f"{owner}: {option}= acts on calls made once per item; batched "
                    "steps and the process executor cannot carry it yet"
                )


StepOptions.NAMES = frozenset(f.name for f in dataclasses.fields(StepOptions))


def _timeout(value: object, owner: str) -> Timeout | None:
    if value is None or isinstance(value, Timeout):
        return value
    try:
        return Timeout(attempt=value)  # type: ignore[arg-type]  # checked by Timeout
    except PipelineError as exc:
        raise PipelineError(f"{owner}: {exc}") from None


def _fallback(value: object, owner: str) -> Fallback:
    try:
        return Fallback(value)
    except PipelineError:
        raise PipelineError(
            f"{owner}: fallback must be a step or hr.Fallback(step), got {value!r}"
        ) from None
