"""LLM steps: ``transduce`` (a record into a Pydantic model), ``complete`` (text),
``embed`` (vectors), each a step that composes like any other.

An LLM step binds to a run as a function step: the same concurrency limit,
micro-batcher (for packing and embeddings), timeout, ordering and fallback as
``@hr.step``; its requests go through its client's budget, circuit, rate limit
and retries (see :mod:`headrace.llm.client`). Its fingerprint holds the model
name, the prompt templates, the output schema and the sampling options, so a
change to any of them never serves stale cached or resumed results.
"""

from __future__ import annotations

from .completion import Complete, complete
from .embedding import Embed, embed
from .llm_step import LLMStep
from .transduction import PACKED, REPAIR, SYSTEM, USER, Transduce, transduce

__all__ = [
    "PACKED",
    "REPAIR",
    "SYSTEM",
    "USER",
    "Complete",
    "Embed",
    "LLMStep",
    "Transduce",
    "complete",
    "embed",
    "transduce",
]
