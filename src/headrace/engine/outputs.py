"""What a function step declares its outputs to be: for validation and for the cache."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from ..errors import OutputTypeError, PipelineError
from ..pipeline.step import FunctionStep

__all__ = ["declared_item_type", "declared_output", "output_validator", "return_annotation"]


def return_annotation(step: FunctionStep[Any, Any]) -> Any:
    """The step's resolved return annotation (None without one).

    Raises:
        Exception: the annotation names something that cannot be resolved.
    """
    target = step.fn if callable(step.fn) and hasattr(step.fn, "__annotations__") else None
    if target is None:
        target = type(step.fn).__call__
    return typing.get_type_hints(target).get("return")


def declared_output(step: FunctionStep[Any, Any]) -> Any:
    """What the step declares its outputs to be, for the cache: set by the step itself
    (LLM steps), else the return annotation; None when neither says."""
    if step.output_type is not None:
        return step.output_type
    try:
        return return_annotation(step)
    except Exception:  # an unresolvable annotation declares nothing
        return None


def declared_item_type(step: Any) -> Any:
    """The type one item's output is declared to be, or ``None`` when the step does not
    say: an LLM step's output model, a function step's return annotation (its element
    type when batched), a model step's (``run_batch``'s element type: an embedding
    is ``list[float]``). ``with_input(step, field=...)`` gives it to the sink's columns.
    """
    own = getattr(step, "_output_type", None)
    if callable(own):
        return own()
    if isinstance(step, FunctionStep):
        kind = declared_output(step)
        if step.batch is not None:
            return _element_type(kind)
        return kind
    run_batch = getattr(type(step), "run_batch", None)
    if callable(run_batch):
        try:
            return _element_type(typing.get_type_hints(run_batch).get("return"))
        except Exception:  # an unresolvable annotation declares nothing
            return None
    return None


def _element_type(kind: Any) -> Any:
    if typing.get_origin(kind) is list:
        (element,) = typing.get_args(kind) or (None,)
        return None if element is Any else element
    return None


def output_validator(step: FunctionStep[Any, Any]) -> Callable[[Any], None]:
    """Check outputs against the return annotation (the element type, for a batched step)."""
    try:
        expected = return_annotation(step)
    except Exception as exc:
        raise PipelineError(
            f"step {step.name!r} has validate=True but its return annotation cannot be "
            f"resolved: {exc}"
        ) from exc
    if expected is None:
        raise PipelineError(
            f"step {step.name!r} has validate=True but its function has no return annotation"
        )
    if step.batch is not None:
        if typing.get_origin(expected) is not list:
            raise PipelineError(
                f"step {step.name!r} is batched, so its return annotation must be list[...], "
                f"got {expected!r}"
            )
        (expected,) = typing.get_args(expected) or (Any,)

    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(expected)
    shown = getattr(expected, "__name__", repr(expected))

    def check(out: Any) -> None:
        try:
            adapter.validate_python(out, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            raise OutputTypeError(
                f"step {step.name!r} returned {type(out).__name__}, expected {shown}: {first}"
            ) from None

    return check
