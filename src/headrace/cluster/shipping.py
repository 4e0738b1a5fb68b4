"""Shipping a pipeline to workers: pickled with cloudpickle (as Ray does), refused
before anything runs with the name of the step that cannot travel."""

from __future__ import annotations

from typing import Any

from ..errors import PipelineError
from ..pipeline.step import Step

__all__ = ["shippable"]


def shippable(root: Step[Any, Any]) -> bytes:
    """``root`` pickled for the workers.

    Raises:
        PipelineError: something in the pipeline cannot be pickled (a lock, an open
            file or connection, a generator ...); names the step that holds it.
    """
    from ray import cloudpickle as pickler

    cloudpickle: Any = pickler

    try:
        blob: bytes = cloudpickle.dumps(root)
    except Exception as exc:
        culprit = _first_unpicklable(root) or root
        raise PipelineError(
            f"the pipeline cannot be shipped to the workers: step {culprit.name!r} holds "
            f"something that cannot be pickled ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); create such things inside the step's "
            "function (or its setup), not around it"
        ) from None
    return blob


def _first_unpicklable(step: Step[Any, Any]) -> Step[Any, Any] | None:
    """The innermost step that cannot be pickled on its own."""
    from ray import cloudpickle as pickler

    cloudpickle: Any = pickler

    for child in step.children():
        try:
            cloudpickle.dumps(child)
        except Exception:
            return _first_unpicklable(child) or child
    return None


def check_placement(root: Step[Any, Any], num_gpus: float) -> None:
    """Refuse a step pinned to a GPU (``device="cuda..."``) when the workers get none:
    Ray hides every GPU from a worker that did not ask for one, so the step would
    fail in every shard.

    Raises:
        PipelineError: names the step and the option to give.
    """
    if num_gpus > 0:
        return
    pending = [root]
    while pending:
        step = pending.pop()
        device = getattr(step, "device", None)
        if isinstance(device, str) and device.startswith("cuda"):
            raise PipelineError(
                f"step {step.name!r} runs on {device!r}, but the workers get no GPU: give "
                "hr.Ray(num_gpus=...) (--num-gpus), or leave device unset to use a GPU "
                "where a worker has one"
            )
        pending.extend(step.children())
