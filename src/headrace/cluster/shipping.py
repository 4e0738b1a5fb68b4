"""Shipping a pipeline to workers: pickled with cloudpickle (as Ray does), refused
before anything runs with the name of the step that cannot travel."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from typing import Any

from ..errors import PipelineError
from ..pipeline.step import Step

__all__ = ["shippable"]


def shippable(root: Step[Any, Any]) -> bytes:
    """``root`` pickled for the workers, and unpickled once in a fresh process the way
    a worker will (pickling can succeed where unpickling fails).

    Raises:
        PipelineError: something in the pipeline cannot be pickled or unpickled (a
            lock, an open file or connection, a generator ...); names the step that
            holds it.
    """
    from ray import cloudpickle as pickler

    cloudpickle: Any = pickler

    try:
        blob: bytes = cloudpickle.dumps(root)
    except Exception as exc:
        culprit = _first_unpicklable(root) or root
        raise _refusal(culprit, "pickled", f"{type(exc).__name__}: {exc}") from None
    failures = _load_elsewhere([blob])
    if failures:
        steps = _descendants(root)
        found = _load_elsewhere([cloudpickle.dumps(step) for step in steps])
        # the innermost failing step: the last one in pre-order among those that fail
        culprit, why = root, failures[0]
        for index in sorted(found):
            culprit, why = steps[index], found[index]
        raise _refusal(culprit, "unpickled in a fresh process", why)
    return blob


def _refusal(culprit: Step[Any, Any], what: str, why: str) -> PipelineError:
    first = why.splitlines()[0][:200] if why else "no reason given"
    return PipelineError(
        f"the pipeline cannot be shipped to the workers: step {culprit.name!r} holds "
        f"something that cannot be {what} ({first}); create such things inside the "
        "step's function (or its setup), not around it"
    )


def _descendants(root: Step[Any, Any]) -> list[Step[Any, Any]]:
    """``root``'s steps below it, in pre-order."""
    found: list[Step[Any, Any]] = []
    pending = list(reversed(root.children()))
    while pending:
        step = pending.pop()
        found.append(step)
        pending.extend(reversed(step.children()))
    return found


_LOADER = """
import json, pickle, sys
from ray import cloudpickle
failures = {}
for index, blob in enumerate(pickle.load(sys.stdin.buffer)):
    try:
        cloudpickle.loads(blob)
    except BaseException as exc:
        failures[index] = f"{type(exc).__name__}: {exc}"
sys.stdout.write("\\n" + _MARK + json.dumps(failures) + "\\n")
"""
_MARK = "headrace-shipping-check "


def _load_elsewhere(blobs: list[bytes]) -> dict[int, str]:
    """Which of ``blobs`` fail to unpickle in a fresh interpreter with this one's
    import path (as a Ray worker started here has), by index, with the reason.

    Raises:
        PipelineError: the fresh interpreter died before it could say.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    done = subprocess.run(
        [sys.executable, "-c", f"_MARK = {_MARK!r}\n{_LOADER}"],
        input=pickle.dumps(blobs),
        capture_output=True,
        env=env,
        check=False,
    )
    text = done.stdout.decode(errors="replace")
    marked = [line for line in text.splitlines() if line.startswith(_MARK)]
    if not marked:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1][:200] if lines else f"it exited {done.returncode}"
        raise PipelineError(
            f"the pipeline cannot be shipped to the workers: a fresh process could not "
            f"unpickle it ({reason})"
        )
    return {int(index): why for index, why in json.loads(marked[-1][len(_MARK) :]).items()}


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
