"""Local models as micro-batched steps: embeddings, sentiment, ``transformers`` pipelines.

Install with ``pip install torch==2.13.0 && pip install 'headrace[models]'``. The
heavy libraries (PyTorch, sentence-transformers, transformers) are imported when a
step first runs a batch, never when ``headrace`` is imported. Models load from
local directories only (``HF_HUB_OFFLINE=1`` is set before any loads), once per
process, on CUDA when PyTorch sees a GPU unless ``device=`` says otherwise.
"""

from .embed import DEFAULT_MODEL, Embed, default_model_path, embed
from .model_step import ModelInputError, ModelStep, load_once, pick_device, text_of
from .pipeline import Pipeline, pipeline
from .sentiment import Sentiment, sentiment, split_sentences

__all__ = [
    "DEFAULT_MODEL",
    "Embed",
    "ModelInputError",
    "ModelStep",
    "Pipeline",
    "Sentiment",
    "default_model_path",
    "embed",
    "load_once",
    "pick_device",
    "pipeline",
    "sentiment",
    "split_sentences",
    "text_of",
]
