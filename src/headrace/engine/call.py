"""How one item's call of a function step runs in a run: the step's call chain.

The chain is one ordered list, built here (:func:`call_chain`), outermost first:
the entry order, the fallback, the cache and its single-flight, the item's total
time limit, then the step's :class:`~headrace.limits.gate.Gate` (the circuit, a
concurrency slot, the rate limit, the call, the counting; retried as ``retry``
says). The body runs on the step's executor, under its per-attempt timeout, its
output validated. Failures become :class:`~headrace.errors.StepFailed` carrying
the step's name. A step with no policy is the same chain with nothing in it but
its slot and its counting: the gate writes that passage out once
(:meth:`~headrace.limits.gate.Gate.handler`), the engine's hot path.
"""

from __future__ import annotations

import asyncio
import contextvars
import typing
from collections.abc import Callable
from functools import partial
from time import thread_time
from typing import TYPE_CHECKING, Any

from .._types import FILTERED
from ..errors import StepFailed, StepRaisedControl, StepTimeout, control_failure
from ..limits.call import Policy
from ..limits.concurrency import ConcurrencyLimit
from ..limits.gate import Counting, Gate, Slots
from ..limits.retry import Retrier
from ..limits.shared_concurrency import controller_for
from ..metrics import StepMetrics
from ..pipeline.step import FunctionStep
from .batcher import BatchCall, MicroBatcher
from .call_policies import bounded, falling_back, in_entry_order
from .context import binds
from .executors import (
    ProcessPool,
    apply_batch,
    apply_each,
    close_thread_pool,
    function_ref,
    open_thread_pool,
)
from .main_guard import check_main_guard
from .outputs import declared_output, output_validator
from .sequencer import Sequencer

if TYPE_CHECKING:
    from .context import Handler, RunContext

__all__ = ["bind_function_step"]


@binds(FunctionStep)
def bind_function_step(
    step: FunctionStep[Any, Any], ctx: RunContext, metrics: StepMetrics | None = None
) -> Handler:
    """Build the handler of ``step`` for the run ``ctx`` (counting into ``metrics``, or
    new metrics of its own)."""
    if metrics is None:
        metrics = ctx.metrics_for(step.name, "batch" if step.batch is not None else "function")
    metrics.slots = step.concurrency
    metrics.executor = step.executor
    if step.call_batch is not None and step.batch is not None:
        metrics.batch_max = step.call_batch.max_size
        metrics.batch_max_wait_s = step.call_batch.max_wait_s
    validator = output_validator(step) if step.validate else None
    if step.call_batch is not None:
        handler = _bind_batched(step, ctx, metrics, validator)
    else:
        handler = _bind_single(step, ctx, metrics, validator)
    for _, stage in reversed(call_chain(step, ctx, metrics)):
        handler = stage(handler)
    return handler


Stage = Callable[["Handler"], "Handler"]
"""One stage of a step's call chain: it takes the handler inside it, returns its own."""


def call_chain(
    step: FunctionStep[Any, Any], ctx: RunContext, metrics: StepMetrics
) -> list[tuple[str, Stage]]:
    """The stages an item passes in ``step`` before the step's gate, outermost first,
    each named: the entry order (``ordered``), the fallback, the cache and its
    single-flight, the item's total time limit. A step with none of them is its gate
    alone (:meth:`~headrace.limits.gate.Gate.handler`: the circuit, a slot, the rate
    limit, the call, the counting, and retries around them)."""
    chain: list[tuple[str, Stage]] = []
    if step.ordered:
        chain.append(("entry order", partial(in_entry_order, sequencer=Sequencer(ctx.activity))))
    fallback = step.fallback
    if fallback is not None:

        def falls_back(handler: Handler) -> Handler:
            assert fallback is not None
            return falling_back(handler, ctx.bind(fallback.step), fallback.when, metrics)

        chain.append(("fallback", falls_back))
    cache = step.cache
    if cache is not None:
        from ..cache.stats import CacheStats
        from .cache_stage import cached

        metrics.cache = stats = CacheStats()
        chain.append(
            (
                "cache",
                partial(
                    cached,
                    cache=cache,
                    name=step.name,
                    fingerprint=step.fingerprint,
                    ctx=ctx,
                    stats=stats,
                    output_type=declared_output(step),
                ),
            )
        )
    total_s = step.total_timeout_s
    if total_s is not None:
        chain.append(
            ("total timeout", partial(bounded, total_s=total_s, name=step.name, metrics=metrics))
        )
    return chain


def _bind_single(
    step: FunctionStep[Any, Any],
    ctx: RunContext,
    metrics: StepMetrics,
    validator: Callable[[Any], None] | None,
) -> Handler:
    name = step.name
    fn = step.fn
    adaptive = step.adaptive
    limiter = ConcurrencyLimit(adaptive.initial if adaptive is not None else step.concurrency)
    metrics.limiter = limiter
    controller = controller_for(adaptive, limiter, name) if adaptive is not None else None
    if controller is not None:
        ctx.on_close_async(controller.close)
    record = metrics.record_call if not step.reports_requests else metrics.record_untimed_call

    timeout_s = step.timeout_s
    rate = step.rate
    call: Callable[[Any], Any]
    if step.is_async:
        call = fn
    elif step.executor == "thread":
        pool = open_thread_pool(step.concurrency, name)
        ctx.on_close(partial(close_thread_pool, pool))
        loop = asyncio.get_running_loop()
        fn = cpu_timed(fn, metrics)
        if rate is None:
            call = partial(loop.run_in_executor, pool, fn)
        else:  # the thread sees the context, so that hr.observe() finds the step's rate

            def call(value: Any) -> Any:
                return loop.run_in_executor(pool, contextvars.copy_context().run, fn, value)
    else:
        call = fn
    awaited = step.is_async or step.executor == "thread"
    circuit = ctx.circuit(step.circuit) if step.circuit is not None else None
    policies: list[Policy] = []
    if circuit is not None:  # (an LLM step's metrics show its client's circuit instead)
        metrics.circuit = circuit
        policies.append(circuit)
    policies.append(Slots(limiter, controller))
    if rate is not None:
        metrics.rate = ctx.rate(rate)
        policies.append(metrics.rate)
    policies.append(Counting(metrics, record, counts_throttles=not step.reports_requests))
    retrier = Retrier(step.retry) if step.retry is not None else None
    gate = Gate(name, policies, retrier=retrier, circuit=circuit, metrics=metrics)
    if step.is_async and timeout_s is None and validator is None:
        return gate.handler(fn)  # the body is the function itself

    async def body(value: Any) -> Any:
        if timeout_s is not None:
            out = await _with_timeout(call(value), timeout_s, name)
        else:
            out = (await call(value)) if awaited else call(value)
        if validator is not None and out is not FILTERED:
            validator(out)
        return out

    return gate.handler(body)


def cpu_timed(fn: Callable[..., Any], metrics: StepMetrics) -> Callable[..., Any]:
    """``fn`` counting the CPU time of its thread into ``metrics.cpu_s`` (a thread step's
    calls that use as much CPU as they take time are bound by the GIL)."""

    def timed(value: Any) -> Any:
        started = thread_time()
        try:
            return fn(value)
        except (StopIteration, StopAsyncIteration) as raised:  # cannot cross a future
            raise StepRaisedControl(raised) from None
        except Exception:
            raise
        except BaseException as raised:  # SystemExit, KeyboardInterrupt ... in a thread
            raise StepRaisedControl(raised) from None
        finally:
            metrics.cpu_s += thread_time() - started

    return timed


def _bind_batched(
    step: FunctionStep[Any, Any],
    ctx: RunContext,
    metrics: StepMetrics,
    validator: Callable[[Any], None] | None,
) -> Handler:
    name = step.name
    fn = step.fn
    timeout_s = step.timeout_s
    batch = step.call_batch
    timed = step.batch is None  # per-item calls in chunks: the worker times each item
    call: BatchCall
    if step.executor == "process":
        target = function_ref(fn, name)
        check_main_guard(name)
        pool = ProcessPool(step.concurrency)
        ctx.on_close(pool.close)
        apply = apply_each if timed else apply_batch

        def call(values: list[Any]) -> Any:
            return pool.call(apply, target, values, timeout_s, name)
    elif step.executor == "thread":
        pool_t = open_thread_pool(step.concurrency, name)
        ctx.on_close(partial(close_thread_pool, pool_t))
        loop = asyncio.get_running_loop()
        fn = cpu_timed(fn, metrics)

        def call(values: list[Any]) -> Any:
            return _with_timeout(loop.run_in_executor(pool_t, fn, values), timeout_s, name)
    elif step.is_async:

        async def guarded(values: list[Any]) -> Any:
            try:
                return await fn(values)
            except BaseException as raised:  # its own CancelledError, SystemExit ...
                failure = control_failure(raised)
                if failure is None:
                    raise
                raise failure from None

        def call(values: list[Any]) -> Any:
            return _with_timeout(guarded(values), timeout_s, name)
    else:

        async def call(values: list[Any]) -> Any:
            try:
                return fn(values)
            except BaseException as raised:  # SystemExit, KeyboardInterrupt ...
                failure = control_failure(raised)
                if failure is None:
                    raise
                raise failure from None

    assert batch is not None  # set above for every batched path
    batcher = MicroBatcher(
        call,
        max_size=batch.max_size,
        max_wait_s=batch.max_wait_s,
        concurrency=step.concurrency,
        activity=ctx.activity,
        spawn=ctx.spawn,
        metrics=metrics,
        timed=timed,
    )
    submit = batcher.submit

    async def handle(value: Any) -> Any:
        try:
            out = await submit(value)
            if validator is not None and out is not FILTERED:
                validator(out)
        except Exception as exc:
            metrics.errors += 1
            raise StepFailed(name, exc) from exc
        metrics.items += 1
        if out is FILTERED:
            metrics.filtered += 1
        return out

    return handle


async def _with_timeout(
    awaitable: typing.Awaitable[Any], timeout_s: float | None, name: str
) -> Any:
    if timeout_s is None:
        return await awaitable
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError as exc:
        if deadline.expired():
            raise StepTimeout(name, timeout_s) from exc
        raise
