"""How many tokens a call will take, and how many it took.

The estimate reads OpenAI-style requests at four characters a token (OpenAI's
own rule of thumb) plus three a message; the simulator counts a prompt with the
same function, so the two agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["estimate_tokens", "max_tokens", "message_text", "usage_tokens"]


def estimate_tokens(value: Any) -> int:
    """A prompt's tokens, guessed from its text at four characters a token.

    Reads OpenAI-style requests: ``messages`` (chat), ``input`` (embeddings),
    ``prompt`` or ``text``; anything else counts its JSON text.
    """
    if isinstance(value, str):
        return max(1, math.ceil(len(value) / 4))
    if isinstance(value, Mapping):
        messages = value.get("messages")
        if isinstance(messages, list):
            return 3 + sum(3 + estimate_tokens(message_text(m)) for m in messages)
        for name in ("input", "prompt", "text"):
            part = value.get(name)
            if isinstance(part, str):
                return estimate_tokens(part)
            if isinstance(part, list) and all(isinstance(p, str) for p in part):
                return sum(estimate_tokens(p) for p in part)
    try:
        return estimate_tokens(orjson.dumps(value, default=str).decode())
    except TypeError:
        return 1


def message_text(message: Any) -> str:
    """A chat message's text: its ``content``, or the text parts of a list of parts."""
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def max_tokens(value: Any) -> int | None:
    """The completion ceiling a request sets (``max_completion_tokens`` or ``max_tokens``)."""
    if isinstance(value, Mapping):
        for name in ("max_completion_tokens", "max_tokens"):
            limit = value.get(name)
            if isinstance(limit, int) and limit > 0:
                return limit
    return None


def usage_tokens(output: Any) -> int | None:
    """The tokens a call used: its output's ``usage.total_tokens`` (a dict or SDK object)."""
    usage = output.get("usage") if isinstance(output, Mapping) else getattr(output, "usage", None)
    total = (
        usage.get("total_tokens")
        if isinstance(usage, Mapping)
        else getattr(usage, "total_tokens", None)
    )
    return total if isinstance(total, int) and not isinstance(total, bool) else None
