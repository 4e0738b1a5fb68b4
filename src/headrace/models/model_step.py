"""What the local-model steps share: loading a model once per process, picking a
device, taking the text out of an item, and running as a micro-batched step.

A model step is a :class:`~headrace.pipeline.step.Step` whose function runs one micro-batch
on a worker thread (PyTorch releases the GIL while it computes, so the event loop
keeps reading and batching meanwhile). One batch is in flight at a time: the model
already uses every core (or the GPU) for it, and the next batch gathers while it
runs, so it leaves full.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from .._types import Handler
from ..engine.call import bind_function_step
from ..engine.context import RunContext, binds
from ..engine.executors import ItemFailure
from ..errors import ModelInputError, PipelineError
from ..pipeline.step import Batch, FunctionStep, Step
from ..values.checks import positive_int

__all__ = [
    "CPU_PASS",
    "ModelInputError",
    "ModelStep",
    "load_once",
    "pick_device",
    "quiet_transformers",
    "text_of",
]

CPU_PASS = 16
"""Texts per forward pass on a CPU. A micro-batch is sorted by length and run in
passes of this size, so a short text is not padded to the longest of 64; on a CPU,
bigger passes only add padding (see docs/benchmarks.md)."""

_loaded: dict[Hashable, Any] = {}
_loading = threading.Lock()


def load_once(key: Hashable, load: Callable[[], Any]) -> Any:
    """The object ``load()`` returns, built once per process for ``key``.

    Models are large and slow to load; every step and run in a process that asks
    for the same model on the same device shares one copy. Loading happens outside
    the event loop (on the step's worker thread), under a lock so that two steps
    never load the same model twice.
    """
    found = _loaded.get(key)  # the lock-free path, once loaded
    if found is not None:
        return found
    with _loading:
        if key not in _loaded:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local path must never reach a hub
            _loaded[key] = load()
        return _loaded[key]


def quiet_transformers() -> None:
    """Turn off ``transformers``' loading progress bars: they would tear through the
    run's own progress line."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def pick_device(device: str | None) -> str:
    """``device``, or ``"cuda"`` when PyTorch sees a GPU and ``"cpu"`` otherwise."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def text_of(item: Any, field: str | None) -> str:
    """The text a model step reads from ``item``: the item itself, or its ``field``.

    Raises:
        ModelInputError: the item (or the field) is not a string, or the field is
            missing; the message names the field and the fields there are.
    """
    if field is None:
        value = item
    elif isinstance(item, Mapping):
        if field not in item:
            raise ModelInputError(
                f"the item has no field {field!r} (it has: {', '.join(map(str, item)) or 'none'})"
            )
        value = item[field]
    elif dataclasses.is_dataclass(item) or hasattr(item, "model_dump"):
        if not hasattr(item, field):
            raise ModelInputError(f"the item ({type(item).__name__}) has no field {field!r}")
        value = getattr(item, field)
    else:
        raise ModelInputError(
            f"field={field!r} needs records (a dict, a Pydantic model or a dataclass), "
            f"got {type(item).__name__}"
        )
    if not isinstance(value, str):
        where = "the item" if field is None else f"field {field!r}"
        hint = "" if field is not None else "; give field= to read the text from a record"
        raise ModelInputError(f"{where} must be a string, got {type(value).__name__}{hint}")
    return value


class ModelStep(Step[Any, Any]):
    """A micro-batched step that runs a local model over the text of each item.

    Args:
        name: the step's name in metrics and errors.
        field: read the text from this field of a record (default: the item is the text).
        batch: how items are coalesced into model calls.
        version: bump it to mark a change the fingerprint cannot see.
        device: where the model runs (default: CUDA when PyTorch sees a GPU).
        pass_size: texts per forward pass (default: :data:`CPU_PASS` on a CPU, the
            whole micro-batch on a GPU).
    """

    kind = "model"
    needs: tuple[str, ...] = ("torch",)
    """The optional modules the model needs (checked before a run starts)."""

    def requires(self) -> tuple[str, ...]:
        """The model's libraries (:attr:`needs`) and the step's own (a cache's Redis)."""
        return (*self.needs, *super().requires())

    def __init__(
        self,
        *,
        name: str,
        field: str | None,
        batch: Batch,
        version: str,
        device: str | None = None,
        pass_size: int | None = None,
    ) -> None:
        if not isinstance(batch, Batch):
            raise PipelineError(f"step {name!r}: batch must be hr.Batch(...), got {batch!r}")
        if field is not None and (not isinstance(field, str) or not field):
            raise PipelineError(f"step {name!r}: field must be a field name, got {field!r}")
        if pass_size is not None:
            positive_int(pass_size, f"step {name!r}: pass_size")
        self.name = name
        self.field = field
        self.batch = batch
        self.version = str(version)
        self.device = device
        self.pass_size = pass_size

    def knobs(self) -> frozenset[str]:
        return frozenset({"batch"})

    def _tune(self, knob: str, value: int) -> None:
        if knob != "batch":
            super()._tune(knob, value)
        self.batch = Batch(max_size=value, max_wait=self.batch.max_wait_s)

    def local_directory(self, model: str | os.PathLike[str]) -> Path:
        """``model`` as an absolute path, checked to be a local directory.

        Raises:
            PipelineError: it is not a directory (a hub name, a typo).
        """
        if not Path(model).is_dir():
            raise PipelineError(
                f"step {self.name!r}: model must be a local model directory, got {str(model)!r} "
                "(headrace loads models from disk only, never from a hub)"
            )
        return Path(model).resolve()

    def passes_of(self, device: Any, texts: int) -> int:
        """Texts per forward pass on ``device`` for a micro-batch of ``texts``."""
        if self.pass_size is not None:
            return self.pass_size
        return CPU_PASS if str(device).startswith("cpu") else texts

    @abc.abstractmethod
    def model_identity(self) -> dict[str, Any]:
        """What decides this step's outputs besides its name and version (hashed)."""

    @abc.abstractmethod
    def run_batch(self, texts: list[str]) -> list[Any]:
        """The outputs for a list of texts, in order (called on a worker thread)."""

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": f"model.{type(self).__name__.lower()}",
            "name": self.name,
            "version": self.version,
            "field": self.field,
            **self.model_identity(),
        }

    def _slots(self) -> int:
        return 2 * self.batch.max_size  # one batch running, the next one gathering

    def _call(self, items: list[Any]) -> list[Any]:
        # An item without its text fails alone here, before the model runs: raising
        # would make the batcher halve the batch and run the model again on the rest.
        texts: list[str | ItemFailure] = []
        for item in items:
            try:
                texts.append(text_of(item, self.field))
            except ModelInputError as exc:
                texts.append(ItemFailure(exc))
        good = [t for t in texts if isinstance(t, str)]
        outputs = iter(self.run_batch(good) if good else [])
        return [t if isinstance(t, ItemFailure) else next(outputs) for t in texts]


@binds(ModelStep)
def bind_model_step(step: ModelStep, ctx: RunContext) -> Handler:
    """A model step in one run: a one-slot thread step over its batches (the model is
    loaded once per process, not per item)."""
    inner: FunctionStep[list[Any], list[Any]] = FunctionStep(
        step._call, name=step.name, executor="thread", concurrency=1, batch=step.batch
    )
    return bind_function_step(inner, ctx, ctx.metrics_for(step.name, step.kind))
