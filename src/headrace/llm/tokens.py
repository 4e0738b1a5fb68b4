"""Counting a prompt's tokens before it is sent.

With ``tiktoken`` installed and its encoding for the model available locally,
prompts are counted exactly; otherwise (no package, an unknown model, or no
network to fetch the encoding) at four characters a token, the heuristic the
rate limiter and ``headrace sim`` use. The choice is made once per model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..limits.usage import estimate_tokens, message_text

__all__ = ["counter_for", "prompt_tokens"]

_log = logging.getLogger("headrace.llm")
_COUNTERS: dict[str, Callable[[str], int] | None] = {}


def counter_for(model: str) -> Callable[[str], int] | None:
    """tiktoken's exact counter for ``model``, or ``None`` when it cannot be had here."""
    if model not in _COUNTERS:
        _COUNTERS[model] = _load(model)
    return _COUNTERS[model]


def _load(model: str) -> Callable[[str], int] | None:
    try:
        import tiktoken  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(model)
    except Exception as exc:  # unknown model, or the encoding file cannot be fetched
        _log.info("tiktoken has no encoding for %r here (%s); estimating tokens", model, exc)
        return None

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def prompt_tokens(body: dict[str, Any]) -> int:
    """A request's prompt tokens: tiktoken's count when available, else the estimate."""
    count = counter_for(str(body.get("model", "")))
    if count is None:
        return estimate_tokens(body)
    messages = body.get("messages")
    if isinstance(messages, list):
        return 3 + sum(3 + count(message_text(m)) for m in messages)
    inputs = body.get("input")
    if isinstance(inputs, str):
        return count(inputs)
    if isinstance(inputs, list):
        return sum(count(x) for x in inputs if isinstance(x, str))
    return estimate_tokens(body)
