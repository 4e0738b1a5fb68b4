"""What comes back from an OpenAI-compatible endpoint: one reply, read whole or as a
stream of server-sent events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import MalformedResponse

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Reply", "message_content", "read_stream"]


@dataclass(slots=True)
class Reply:
    """One answer from the provider.

    Attributes:
        content: the message text (chat), or ``""`` (embeddings).
        body: the parsed JSON answer (for a stream: the chunks put together).
        headers: the response headers, names in lower case.
        first_token_s: for a stream, seconds from sending to the first token.
        stream_s: for a stream, seconds from the first token to the last.
    """

    content: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    first_token_s: float | None = None
    stream_s: float = 0.0

    @property
    def usage(self) -> tuple[int, int]:
        """Prompt and completion tokens, as the provider counted them (0 if it did not)."""
        usage = self.body.get("usage") or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        return (
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else 0,
        )


def message_content(body: dict[str, Any]) -> str:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedResponse("a chat answer without choices[0].message") from None
    return content if isinstance(content, str) else ""


async def read_stream(
    response: aiohttp.ClientResponse, headers: dict[str, str], started: float
) -> Reply:
    """Read server-sent events into one reply, timing the first and last tokens."""
    parts: list[str] = []
    first = last = None
    usage: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    done = False
    async for raw_line in response.content:
        line = raw_line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"a stream chunk is not JSON ({exc})") from None
        meta = meta or {k: chunk.get(k) for k in ("id", "model", "created")}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                last = time.perf_counter()
                if first is None:
                    first = last
                parts.append(text)
    if not done:
        raise MalformedResponse("the stream ended before its [DONE] event")
    content = "".join(parts)
    body: dict[str, Any] = {
        **meta,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }
    if usage is not None:
        body["usage"] = usage
    first_token = (first - started) if first is not None else (time.perf_counter() - started)
    return Reply(content, body, headers, first_token, (last - first) if first and last else 0.0)
