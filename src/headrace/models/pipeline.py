"""``hr.models.pipeline()``: a Hugging Face ``transformers`` pipeline from a local path."""

from __future__ import annotations

import os
from typing import Any

from ..errors import PipelineError
from ..pipeline.step import Batch
from .model_step import ModelStep, load_once, pick_device, quiet_transformers

__all__ = ["Pipeline", "pipeline"]


class Pipeline(ModelStep):
    """A step that runs a Hugging Face ``transformers`` pipeline on each text, micro-batched.

    The output for each item is what the pipeline returns for one text.

    Args:
        task: the pipeline task: ``"text-classification"``, ``"token-classification"``,
            ``"feature-extraction"``, ``"zero-shot-classification"``...
        model: a local model directory (``save_pretrained`` output, with its
            tokenizer). Nothing is fetched from a hub.
        field: read the text from this field of a record (default: the item is the text).
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when PyTorch sees a GPU.
        batch: how items are coalesced into model calls (default ``hr.Batch(32, "10ms")``).
        pass_size: texts per forward pass (default 16 on a CPU, the micro-batch on a GPU).
        options: keyword arguments for each pipeline call (``top_k=``, ``truncation=``...).
        name: the step's name (default: the task).
        version: bump it to mark a change the fingerprint cannot see.

    Raises:
        PipelineError: ``model`` is not a local directory, or an option is out of range.
    """

    needs = ("torch", "transformers")

    def __init__(
        self,
        task: str,
        model: str | os.PathLike[str],
        *,
        field: str | None = None,
        device: str | None = None,
        batch: Batch | None = None,
        pass_size: int | None = None,
        options: dict[str, Any] | None = None,
        name: str | None = None,
        version: str = "1",
    ) -> None:
        name = name or task
        super().__init__(
            name=name,
            field=field,
            batch=batch or Batch(32, "10ms"),
            version=version,
            device=device,
            pass_size=pass_size,
        )
        if not isinstance(task, str) or not task:
            raise PipelineError(
                f"step {name!r}: task must be a pipeline task such as 'text-classification'"
            )
        self.task = task
        self.model = self.local_directory(model)
        self.options = dict(options or {})

    def model_identity(self) -> dict[str, Any]:
        return {"task": self.task, "model": str(self.model), "options": self.options}

    def loaded(self) -> Any:
        """The ``transformers`` pipeline, loaded once per process and device."""
        device = pick_device(self.device)

        def load() -> Any:
            quiet_transformers()
            from transformers import pipeline as hf_pipeline

            return hf_pipeline(self.task, model=str(self.model), device=device)

        return load_once(("transformers", self.task, str(self.model), device), load)

    def run_batch(self, texts: list[str]) -> list[Any]:
        """The pipeline's result for each text, in order.

        The texts go to the model sorted by length, in passes of ``pass_size``
        (default 16 on a CPU, the whole micro-batch on a GPU), so that little
        padding is computed; the results are put back in the items' order.
        """
        pipe = self.loaded()
        size = self.passes_of(pipe.device, len(texts))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results = pipe([texts[i] for i in order], batch_size=size, **self.options)
        outputs: list[Any] = [None] * len(texts)
        for i, result in zip(order, results, strict=True):
            outputs[i] = result
        return outputs


pipeline = Pipeline
"""``hr.models.pipeline(...)``: the name pipelines are written with (see :class:`Pipeline`)."""
