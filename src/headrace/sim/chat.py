"""What one chat request is answered by the simulated provider, online or in a batch:
the reply's text and token counts (a function of the request), and the body around it."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

from ..limits.usage import estimate_tokens
from .answers import WORDS, spoil, structured_answer

__all__ = ["STRUCTURED_FAULTS", "chat_body", "chat_reply", "digest"]

STRUCTURED_FAULTS = frozenset({"invalid", "drop", "shuffle"})
"""The faults that spoil a structured answer rather than refuse the request."""


def digest(*parts: Any) -> int:
    """A 64-bit number drawn from ``parts``: the seed of a repeatable answer."""
    return int.from_bytes(hashlib.sha256(orjson.dumps(parts)).digest()[:8], "big")


def chat_reply(body: dict[str, Any], fault: str | None) -> tuple[str, int, int]:
    """The reply's text and its prompt and completion token counts."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    prompt_tokens = estimate_tokens({"messages": messages})  # the estimate Rate makes, too
    seed = digest("chat", body.get("model"), messages, body.get("max_tokens"))
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 256
    if not isinstance(limit, int) or limit < 1:
        raise ValueError("'max_tokens' must be a positive integer")
    rng = random.Random(seed)
    response_format = body.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValueError("'response_format.json_schema.schema' must be a JSON schema object")
        answer = structured_answer(schema, messages, rng, body.get("model"))
        if fault in STRUCTURED_FAULTS:
            answer = spoil(answer, fault, rng)
        text = orjson.dumps(answer).decode()
        return text, prompt_tokens, estimate_tokens(text)
    completion_tokens = min(limit, 8 + seed % 57)
    text = " ".join(rng.choice(WORDS) for _ in range(completion_tokens))
    if kind == "json_object":
        text = orjson.dumps({"answer": text}).decode()
    return text, prompt_tokens, completion_tokens


def chat_body(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI chat completion answering with ``text``."""
    return {
        "id": f"chatcmpl-sim{digest(text) % 10**12:012d}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
