"""``hr.step``: a function made a step, bare (``@hr.step``) or with options
(``@hr.step(concurrency=8, batch=32)``), typed so that the step's input and output are
the function's."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from ..cache import Cache
from ..limits.circuit import Circuit
from ..limits.concurrency import AdaptiveConcurrency
from ..limits.policies import Timeout
from ..limits.rate import Rate
from ..limits.retry import Retry
from ..values.checks import check_options
from .options import Batch, Executor, Fallback
from .step import STEP_OPTIONS, FunctionStep, Step

__all__ = ["step"]

A = TypeVar("A")
B = TypeVar("B")


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
        fn: the function (when used bare, as ``@hr.step``).
        **options: ``name``, ``version``, ``concurrency``, ``executor``, ``timeout``,
            ``ordered``, ``batch``, ``validate``, ``retry``, ``rate``, ``circuit``,
            ``fallback``, ``cache``: see :class:`~headrace.pipeline.options.StepOptions` for
            what each means and its default.

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
