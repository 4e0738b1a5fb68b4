"""Anthropic's Message Batches, simulated: ``/v1/messages/batches``.

Requests are sent inline (``{"custom_id", "params"}``), the batch is retrieved and
listed (newest first, paged with ``after_id``/``before_id`` and ``limit``) until
its ``processing_status`` is ``ended``, and its results stream from
``results_url`` as JSONL, out of order. A cancel stops the batch, but requests
already due still finish (and are billed). Batches carry no metadata. The official
``anthropic`` SDK's calls work unchanged.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from .batch_book import Answer, BatchBook, SimBatch

__all__ = ["add_message_batch_routes"]

_MAX_CUSTOM_ID = 64


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _when(unix: int | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def as_chat(params: dict[str, Any]) -> dict[str, Any]:
    """A Messages request's params as the chat body the simulator answers (the system
    prompt first, content blocks joined into text, a JSON schema ``output_format``,
    Anthropic's structured outputs, as ``response_format``)."""
    messages: list[dict[str, Any]] = []
    system = params.get("system")
    if isinstance(system, list):
        system = " ".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    if system:
        messages.append({"role": "system", "content": str(system)})
    for message in params.get("messages") or []:
        if not isinstance(message, dict):
            raise ValueError("every message must be an object")
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        messages.append({"role": message.get("role"), "content": content})
    chat = {"model": params.get("model"), "messages": messages, "max_tokens": params["max_tokens"]}
    output_format = params.get("output_format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        schema = {"name": "output", "schema": output_format.get("schema")}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    return chat


def _result_line(batch: SimBatch, answer: Answer) -> bytes:
    result: dict[str, Any]
    if answer.outcome == "succeeded":
        result = {
            "type": "succeeded",
            "message": {
                "id": f"msg_{answer.custom_id}",
                "type": "message",
                "role": "assistant",
                "model": batch.model,
                "content": [{"type": "text", "text": answer.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": answer.prompt_tokens,
                    "output_tokens": answer.completion_tokens,
                },
            },
        }
    elif answer.outcome == "errored":
        kind = "api_error" if answer.status >= 500 else "invalid_request_error"
        result = {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": answer.error}},
        }
    else:
        result = {"type": answer.outcome}
    return orjson.dumps({"custom_id": answer.custom_id, "result": result}) + b"\n"


def add_message_batch_routes(app: web.Application, book: BatchBook) -> None:
    """Serve Anthropic's Message Batches API from ``book``."""

    def shown(batch: SimBatch, root: str) -> dict[str, Any]:
        now = time.monotonic()
        ended = book.ended(batch, now)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for answer in batch.answers or ():
                counts[answer.outcome] += 1
        else:
            counts["processing"] = len(batch.requests)
        status = "ended" if ended else "canceling" if batch.cancelled else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _when(batch.ended_at),
            "created_at": _when(batch.created_at),
            "expires_at": _when(batch.created_at + 86400),
            "archived_at": None,
            "cancel_initiated_at": _when(batch.created_at) if batch.cancelled else None,
            "results_url": f"{root}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def root_of(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def found(request: web.Request) -> SimBatch | None:
        batch = book.batches.get(request.match_info["batch_id"])
        return batch if batch is not None and batch.shape == "anthropic" else None

    async def create(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            rows = body["requests"]
            if not isinstance(rows, list) or not rows:
                raise ValueError("requests must be a non-empty list")
            requests: list[tuple[str, dict[str, Any]]] = []
            for number, row in enumerate(rows):
                custom_id = row.get("custom_id")
                if not isinstance(custom_id, str) or not 0 < len(custom_id) <= _MAX_CUSTOM_ID:
                    raise ValueError(f"requests.{number}.custom_id: 1-64 characters")
                if any(custom_id == seen for seen, _ in requests):
                    raise ValueError(f"requests.{number}.custom_id: used twice")
                requests.append((custom_id, as_chat(row["params"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            return _error(400, f"invalid request: {exc}")
        batch = book.submit("anthropic", requests, "msgbatch_")
        if book.lose_this_create():
            assert request.transport is not None
            request.transport.abort()  # the batch exists; its answer never arrives
            raise asyncio.CancelledError
        return web.json_response(shown(batch, root_of(request)))

    async def retrieve(request: web.Request) -> web.Response:
        batch = found(request)
        if batch is None:
            return _error(404, "message batch not found", "not_found_error")
        return web.json_response(shown(batch, root_of(request)))

    async def list_batches(request: web.Request) -> web.Response:
        root = root_of(request)
        batches = reversed(list(book.batches.values()))
        rows = [shown(b, root) for b in batches if b.shape == "anthropic"]
        ids = [row["id"] for row in rows]
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "20"))))
        except ValueError:
            limit = 20
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after in ids:
            start = ids.index(after) + 1
            data = rows[start : start + limit]
            more = start + limit < len(rows)
        elif before in ids:
            end = ids.index(before)
            data = rows[max(0, end - limit) : end]
            more = end - limit > 0
        else:
            data, more = rows[:limit], limit < len(rows)
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        return web.json_response(
            {"data": data, "has_more": more, "first_id": first, "last_id": last}
        )

    async def cancel(request: web.Request) -> web.Response:
        batch = found(request)
        if batch is None:
            return _error(404, "message batch not found", "not_found_error")
        book.cancel(batch)
        return web.json_response(shown(batch, root_of(request)))

    async def results(request: web.Request) -> web.Response:
        batch = found(request)
        if batch is None:
            return _error(404, "message batch not found", "not_found_error")
        if not book.ended(batch):
            return _error(400, "the batch is still processing")
        answers = list(batch.answers or ())
        random.Random(batch.id).shuffle(answers)  # results come in no promised order
        content = b"".join(_result_line(batch, a) for a in answers)
        return web.Response(body=content, content_type="application/binary")

    app.router.add_post("/v1/messages/batches", create)
    app.router.add_get("/v1/messages/batches", list_batches)
    app.router.add_get("/v1/messages/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", cancel)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", results)
