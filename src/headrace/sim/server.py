"""The simulated provider: an OpenAI-compatible HTTP API served by aiohttp.

Every answer is a function of the request (content, token counts, embedding
vectors), so runs repeat. Limits are token buckets over the requests and the
tokens (prompt plus completion) the provider accepts; a request that does not
fit gets a 429 carrying ``Retry-After``, ``retry-after-ms`` and the
``x-ratelimit-*`` headers OpenAI sends. Every answer carries the
``x-ratelimit-*`` headers, as OpenAI's do.
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
import struct
import time
from typing import Any

import orjson
from aiohttp import web

from ..limits.bucket import TokenBucket
from ..limits.usage import estimate_tokens
from ..values.durations import format_compound
from .batch_book import BatchBook
from .batches import add_batch_routes
from .chat import STRUCTURED_FAULTS, chat_body, chat_reply, digest
from .config import SimConfig, is_flex
from .message_batches import add_message_batch_routes

__all__ = ["SimState", "build_app"]

_WINDOW_S = 0.1
MAX_UPLOAD = 200 * 1024 * 1024
"""The largest request body: OpenAI takes batch files of up to 200 MB."""
_MODELS = ("sim-chat", "sim-embed")


class SimState:
    """The provider's buckets, fault draws and counters; ``reset`` starts them afresh."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Full buckets, zero counters, and the fault draws from the seed again."""
        now = time.monotonic()
        config = self.config
        self.started = now
        self.requests = (
            TokenBucket(config.rpm / 60, config.request_burst or 1.0, now) if config.rpm else None
        )
        self.tokens = (
            TokenBucket(config.tpm / 60, config.tokens_burst or 1.0, now) if config.tpm else None
        )
        self.rng = random.Random(config.seed)
        self.flex_rng = random.Random(config.seed + 1)  # refusals apart from the faults
        self.in_flight = 0
        self.counts: dict[str, int] = {
            "requests": 0,
            "ok": 0,
            "throttled": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "peak_in_flight": 0,
            "flex_requests": 0,
            "flex_refused": 0,
        }
        self.faults: dict[str, int] = {}
        self.windows: dict[str, list[int]] = {"arrived": [], "ok": [], "throttled": []}

    def count(self, series: str, now: float) -> None:
        """Add one to ``series`` in the 100 ms window holding ``now``."""
        window = self.windows[series]
        index = int((now - self.started) / _WINDOW_S)
        if index >= len(window):
            window.extend([0] * (index + 1 - len(window)))
        window[index] += 1

    def served(self, prompt_tokens: int, completion_tokens: int, flex: bool = False) -> None:
        """Count one request answered in full (on the flex tier with ``flex``)."""
        self.counts["ok"] += 1
        self.counts["flex_requests"] += flex
        self.count("ok", time.monotonic())
        self.counts["prompt_tokens"] += prompt_tokens
        self.counts["completion_tokens"] += completion_tokens

    def stats(self) -> dict[str, Any]:
        """Counters since the start or the last reset, with per-100 ms windows."""
        return {
            **self.counts,
            "faults": dict(self.faults),
            "elapsed_s": round(time.monotonic() - self.started, 6),
            "window_s": _WINDOW_S,
            "windows": {name: list(values) for name, values in self.windows.items()},
        }

    def in_storm(self, now: float) -> bool:
        """Whether ``now`` falls in a 429 storm."""
        every = self.config.storm_every
        return every is not None and (now - self.started) % every >= every - self.config.storm_for

    def limit_headers(self, now: float) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers describing both buckets at ``now``."""
        headers: dict[str, str] = {}
        for kind, bucket, per_minute in (
            ("requests", self.requests, self.config.rpm),
            ("tokens", self.tokens, self.config.tpm),
        ):
            if bucket is None or per_minute is None:
                continue
            headers[f"x-ratelimit-limit-{kind}"] = str(round(per_minute))
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(bucket.refill(now))))
            headers[f"x-ratelimit-reset-{kind}"] = format_compound(bucket.until_full(now))
        return headers

    def admit(self, cost: int, now: float) -> float | None:
        """Take one request and ``cost`` tokens; or return the seconds until both fit."""
        waits = [
            bucket.wait_for(need, now)
            for bucket, need in ((self.requests, 1.0), (self.tokens, float(cost)))
            if bucket is not None
        ]
        wait = max(waits, default=0.0)
        if wait > 0:
            return wait
        for bucket, need in ((self.requests, 1.0), (self.tokens, float(cost))):
            if bucket is not None:
                bucket.try_take(need, now)
        return None


def _error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _flex_refusal(state: SimState, model: str) -> web.Response | None:
    """The answer to a flex request that is not served: a model without flex (400), or
    no capacity (OpenAI's 429 or Groq's 498, at ``flex_refusal_rate``); ``None`` to serve it."""
    config = state.config
    offered = config.flex_models
    if offered is not None and model not in {m.strip() for m in offered.split(",")}:
        message = f"Flex processing is not available for model {model!r}"
        return _error(400, message, "invalid_request_error")
    if state.flex_rng.random() >= config.flex_refusal_rate:
        return None
    state.counts["flex_refused"] += 1
    if config.flex_refusal_status == 498:
        return _error(498, "Flex capacity exceeded; retry later.", "capacity_exceeded")
    message = "Resource Unavailable: no flex capacity now; retry later or use the default tier."
    return _error(429, message, "resource_unavailable")


def _embedding_inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return list(raw)
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [" ".join(map(str, raw))]  # one input given as token ids
    raise ValueError("'input' must be a string or a non-empty list of strings")


def _vector(text: str, dim: int) -> list[float]:
    rng = random.Random(digest("embed", text, dim))
    values = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def build_app(config: SimConfig) -> web.Application:
    """The aiohttp application of a simulated provider with ``config``."""
    state = SimState(config)
    app = web.Application(client_max_size=MAX_UPLOAD)  # batch files reach 200 MB

    async def serve(request: web.Request, kind: str) -> web.StreamResponse:
        now = time.monotonic()
        state.counts["requests"] += 1
        state.count("arrived", now)
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if kind == "chat":
                text, prompt_tokens, completion_tokens = chat_reply(body, None)
                inputs: list[str] = []
            else:
                inputs = _embedding_inputs(body)
                text, prompt_tokens, completion_tokens = "", sum(map(estimate_tokens, inputs)), 0
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _error(400, f"invalid request: {exc}", "invalid_request_error")
        flex = kind == "chat" and is_flex(body)
        if flex:
            refused = _flex_refusal(state, str(body.get("model") or _MODELS[0]))
            if refused is not None:
                return refused

        throttle_wait: float | None = None
        if state.in_storm(now):
            throttle_wait = config.storm_for
        elif config.concurrency is not None and state.in_flight >= config.concurrency:
            throttle_wait = 0.05
        else:
            throttle_wait = state.admit(prompt_tokens + completion_tokens, now)
        fault = None if throttle_wait is not None else config.pick_fault(state.rng)
        if fault == "429":
            throttle_wait = 1.0
        elif fault in STRUCTURED_FAULTS:
            state.faults[fault] = state.faults.get(fault, 0) + 1
            if kind == "chat":
                text = chat_reply(body, fault)[0]
            fault = None  # an answer all the same: served and counted
        headers = state.limit_headers(now)
        if throttle_wait is not None:
            state.counts["throttled"] += 1
            state.count("throttled", now)
            headers["retry-after"] = str(max(1, math.ceil(throttle_wait)))
            headers["retry-after-ms"] = str(max(1, math.ceil(throttle_wait * 1e3)))
            return _error(
                429, "Rate limit reached; please retry later.", "rate_limit_exceeded", headers
            )

        state.in_flight += 1
        state.counts["peak_in_flight"] = max(state.counts["peak_in_flight"], state.in_flight)
        try:
            if fault is not None:
                state.faults[fault] = state.faults.get(fault, 0) + 1
            latency = (
                config.latency_of(body) if config.repeatable else config.latency_s(state.rng, flex)
            )
            if fault == "hang":
                latency = config.hang_s
            if latency > 0:
                await asyncio.sleep(latency)
            if fault in ("500", "503"):
                status = int(fault)
                kind_name = "server_error" if status == 500 else "service_unavailable"
                return _error(status, f"simulated {status}", kind_name, headers)
            if fault == "reset":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # nothing more can be sent
            model = str(body.get("model") or _MODELS[0 if kind == "chat" else 1])
            if kind == "chat":
                reply = chat_body(model, text, prompt_tokens, completion_tokens)
                reply["service_tier"] = "flex" if flex else "default"
                if body.get("stream"):
                    if fault is None:
                        state.served(prompt_tokens, completion_tokens, flex)
                    usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    return await _stream(request, reply, usage, headers, fault)
            else:
                dim = body.get("dimensions") or config.embedding_dim
                reply = _embeddings_body(model, inputs, int(dim), prompt_tokens, body)
            if fault is None:
                state.served(prompt_tokens, completion_tokens, flex)
            payload = orjson.dumps(reply)
            if fault == "malformed":
                payload = b'{"id": "sim", "choices": [ this is not json'
            elif fault == "truncated":
                return await _truncated(request, payload, headers)
            return web.Response(body=payload, content_type="application/json", headers=headers)
        finally:
            state.in_flight -= 1

    async def chat(request: web.Request) -> web.StreamResponse:
        return await serve(request, "chat")

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await serve(request, "embed")

    async def models(request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "headrace-sim"}
            for name in _MODELS
        ]
        return web.json_response({"object": "list", "data": data})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**state.stats(), "batch": book.stats()})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        book.reset()
        return web.json_response({"reset": True})

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    book = BatchBook(config)
    add_batch_routes(app, book)
    add_message_batch_routes(app, book)
    return app


def _embeddings_body(
    model: str, inputs: list[str], dim: int, prompt_tokens: int, body: dict[str, Any]
) -> dict[str, Any]:
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(text, dim)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


async def _stream(
    request: web.Request,
    reply: dict[str, Any],
    include_usage: bool,
    headers: dict[str, str],
    fault: str | None,
) -> web.StreamResponse:
    """Send ``reply`` as server-sent events, a few words a chunk, as OpenAI streams."""
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {key: reply[key] for key in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    words = reply["choices"][0]["message"]["content"].split(" ")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [
        {"content": (" " if i else "") + " ".join(words[i : i + 4])}
        for i in range(0, len(words), 4)
    ]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in deltas
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    for number, chunk in enumerate(chunks):
        if fault == "truncated" and number == len(chunks) // 2:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _truncated(
    request: web.Request, payload: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Promise the whole body, send half of it, and drop the connection."""
    response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    assert request.transport is not None
    request.transport.abort()
    raise asyncio.CancelledError
