"""How the compositions run: the engine's binders for sequences, fan-outs, merges,
routers, maps and filters (the declarations are in :mod:`headrace.pipeline.compose`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from .._types import FILTERED
from ..errors import NoRoute, StepFailed
from ..io.column_types import declared_types
from ..pipeline.compose import Branches, Filter, MapStep, Merge, Parallel, Route, Sequence
from ..pipeline.keep import TypedRecord, WithInput, added_fields
from .context import binds
from .outputs import declared_item_type
from .tasks import run_together

if TYPE_CHECKING:
    from .._types import Handler
    from .context import RunContext

__all__ = [
    "bind_filter",
    "bind_map_step",
    "bind_merge",
    "bind_parallel",
    "bind_route",
    "bind_sequence",
    "bind_with_input",
]


@binds(Sequence)
def bind_sequence(step: Sequence[Any, Any], ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.Sequence` in one run."""
    if isinstance(step.steps[0], Merge):
        step.steps[0].check_follows(None)
    handlers = tuple(ctx.bind(s) for s in step.steps)
    if len(handlers) == 1:
        return handlers[0]

    async def handle(value: Any) -> Any:
        for handler in handlers:
            value = await handler(value)
            if value is FILTERED:
                return value
        return value

    return handle


@binds(Parallel)
def bind_parallel(step: Parallel[Any, Any], ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.Parallel` in one run."""
    handlers = tuple(ctx.bind(b) for b in step.branches)
    keys, names = step.keys, step.names
    activity = ctx.activity

    async def handle(value: Any) -> Any:
        outputs = await run_together([partial(h, value) for h in handlers], activity)
        if any(out is FILTERED for out in outputs):
            return FILTERED
        if keys is not None:
            return dict(zip(keys, outputs, strict=True))
        return Branches(outputs, names)

    return handle


@binds(Merge)
def bind_merge(step: Merge, ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.Merge` in one run."""

    async def handle(value: Any) -> Any:
        return dict(zip(value.names, value, strict=True))

    return handle


@binds(Route)
def bind_route(step: Route[Any, Any], ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.Route` in one run."""
    metrics = ctx.metrics_for(step.name, "route")
    handlers = {key: ctx.bind(s) for key, s in step.branches.items()}
    fallback = ctx.bind(step.default) if step.default is not None else None
    counts = metrics.branches
    labels = {key: str(key) for key in handlers}
    select, name = step.selector, step.name

    async def handle(value: Any) -> Any:
        metrics.calls += 1
        try:
            key = select(value)
            handler = handlers.get(key)
            if handler is None:
                if fallback is None:
                    raise NoRoute(
                        f"selector chose {key!r}, which is not a branch "
                        f"({sorted(str(k) for k in handlers)}) and there is no default"
                    )
                handler, label = fallback, "default"
            else:
                label = labels[key]
        except Exception as exc:
            metrics.errors += 1
            raise StepFailed(name, exc) from exc
        counts[label] = counts.get(label, 0) + 1
        metrics.items += 1
        return await handler(value)

    return handle


@binds(MapStep)
def bind_map_step(step: MapStep[Any, Any], ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.MapStep` in one run."""
    metrics = ctx.metrics_for(step.name, "map")
    inner = ctx.bind(step.inner)
    activity = ctx.activity
    limit = step.concurrency
    skip = step.on_error == "skip"

    async def handle(value: Any) -> Any:
        metrics.calls += 1
        try:
            elements = step.elements(value)
        except (TypeError, KeyError, AttributeError) as exc:
            metrics.errors += 1
            raise StepFailed(step.name, exc) from exc
        results: list[Any] = [FILTERED] * len(elements)
        position = iter(range(len(elements)))

        async def worker() -> None:
            for index in position:
                try:
                    results[index] = await inner(elements[index])
                except StepFailed as failure:
                    if skip:
                        metrics.skipped += 1
                        continue
                    failure.add_note(f"in element {index} of {step.name}")
                    raise

        workers = min(limit, len(elements))
        if workers == 1:
            await worker()
        elif workers > 1:
            await run_together([worker] * workers, activity)
        metrics.items += 1
        return [r for r in results if r is not FILTERED]

    return handle


@binds(Filter)
def bind_filter(step: Filter[Any], ctx: RunContext) -> Handler:
    """The handler of a :class:`~headrace.pipeline.compose.Filter` in one run."""
    metrics = ctx.metrics_for(step.name, "filter")
    predicate, name = step.predicate, step.name
    is_async = inspect.iscoroutinefunction(predicate)

    async def handle(value: Any) -> Any:
        metrics.calls += 1
        try:
            keep = (await predicate(value)) if is_async else predicate(value)
        except Exception as exc:
            metrics.errors += 1
            raise StepFailed(name, exc) from exc
        metrics.items += 1
        if keep:
            return value
        metrics.filtered += 1
        return FILTERED

    return handle


@binds(WithInput)
def bind_with_input(step: WithInput, ctx: RunContext) -> Handler:
    """Build the handler of a :func:`~headrace.pipeline.keep.with_input` step: the input record
    with the inner step's output fields added."""
    inner = ctx.bind(step.inner)
    name, field, keeps = step.name, step.field, step.keeps
    # what the inner step declares one output to be (an embedding: list[float]), so
    # that a sink's column is a list<double>, not JSON text
    item_type = declared_item_type(step.inner) if field is not None else None

    async def handle(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise StepFailed(
                name,
                TypeError(
                    f"with_input keeps the fields of a record (a dict), got {type(value).__name__}"
                ),
            )
        out = await inner(value)
        if out is FILTERED:
            return out
        if keeps is not None:
            value = value.get(keeps)
            if not isinstance(value, Mapping):
                raise StepFailed(
                    name,
                    TypeError(
                        f"keep_input keeps the fields of a record (a dict), got "
                        f"{type(value).__name__}"
                    ),
                )
        try:
            added = added_fields(out) if field is None else {field: out}
        except TypeError as exc:
            raise StepFailed(name, exc) from None
        if field is None:
            kinds = declared_types(type(out))
        elif item_type is not None and item_type is not Any:
            kinds = {field: item_type}
        else:
            kinds = {field: type(out)} if declared_types(type(out)) else {}
        record = TypedRecord({**value, **added})
        record.field_types = {**getattr(value, "field_types", {}), **kinds}
        return record

    return handle
