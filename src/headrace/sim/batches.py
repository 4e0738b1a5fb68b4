"""OpenAI's batch API, simulated: ``/v1/files`` and ``/v1/batches``.

A JSONL file of requests is uploaded (``purpose="batch"``, with an optional
``expires_after``), a batch is created from it (with ``metadata``), retrieved and
listed (newest first, paged with ``after`` and ``limit``) until it has ended, and
its output file (one line per answered request, in no promised order) and error
file (one line per request that failed, expired or was cancelled) are read back.
A batch that would pass the queue's enqueued-token limit fails at validation with
``token_limit_exceeded``. The official ``openai`` SDK's calls work unchanged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from .batch_book import Answer, BatchBook, SimBatch
from .chat import chat_body

__all__ = ["add_batch_routes"]

_MAX_CUSTOM_ID = 64


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


class Files:
    """The uploaded files and the batches' output and error files."""

    def __init__(self, book: BatchBook) -> None:
        self.book = book
        self.files: dict[str, dict[str, Any]] = {}

    def add(self, content: bytes, filename: str, purpose: str, expires_s: int | None) -> str:
        """Keep a file; return its id."""
        file_id = self.book.new_id("file-")
        created = int(time.time())
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": created,
            "expires_at": created + expires_s if expires_s else None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "content": content,
        }
        return file_id

    def get(self, file_id: str) -> dict[str, Any] | None:
        """A file that exists and has not expired."""
        found = self.files.get(file_id)
        if found is None or (found["expires_at"] and found["expires_at"] <= time.time()):
            return None
        return found

    @staticmethod
    def shown(found: dict[str, Any]) -> dict[str, Any]:
        """A file as the API shows it (without its content)."""
        return {k: v for k, v in found.items() if k != "content"}


def _read_requests(content: bytes, endpoint: str) -> list[tuple[str, dict[str, Any]]]:
    """The requests of an input file; ``ValueError`` names the first bad line."""
    requests: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError(f"line {number} is not JSON") from None
        custom_id = row.get("custom_id") if isinstance(row, dict) else None
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= _MAX_CUSTOM_ID:
            raise ValueError(f"line {number}: custom_id must be a string of 1-64 characters")
        if custom_id in seen:
            raise ValueError(f"line {number}: custom_id {custom_id!r} is used twice")
        if row.get("url") != endpoint or row.get("method") != "POST":
            raise ValueError(f"line {number}: method must be POST and url {endpoint}")
        if not isinstance(row.get("body"), dict):
            raise ValueError(f"line {number}: body must be an object")
        seen.add(custom_id)
        requests.append((custom_id, row["body"]))
    if not requests:
        raise ValueError("the file holds no request")
    return requests


def _output_line(batch: SimBatch, answer: Answer) -> bytes:
    request_id = f"req_{batch.id}_{answer.custom_id}"
    if answer.outcome == "succeeded":
        reply = chat_body(batch.model, answer.text, answer.prompt_tokens, answer.completion_tokens)
        row: dict[str, Any] = {
            "id": f"batch_req_{answer.custom_id}",
            "custom_id": answer.custom_id,
            "response": {"status_code": 200, "request_id": request_id, "body": reply},
            "error": None,
        }
    elif answer.outcome == "errored":
        kind = "server_error" if answer.status >= 500 else "invalid_request_error"
        error = {"message": answer.error, "type": kind, "param": None, "code": None}
        row = {
            "id": f"batch_req_{answer.custom_id}",
            "custom_id": answer.custom_id,
            "response": {
                "status_code": answer.status,
                "request_id": request_id,
                "body": {"error": error},
            },
            "error": None,
        }
    else:
        code = "batch_expired" if answer.outcome == "expired" else "batch_cancelled"
        message = (
            "This request could not be executed before the completion window expired."
            if answer.outcome == "expired"
            else "This request was not executed because the batch was cancelled."
        )
        row = {
            "id": f"batch_req_{answer.custom_id}",
            "custom_id": answer.custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    return orjson.dumps(row) + b"\n"


def add_batch_routes(app: web.Application, book: BatchBook) -> None:
    """Serve OpenAI's files and batches API from ``book``."""
    files = Files(book)

    def shown(batch: SimBatch) -> dict[str, Any]:
        now = time.monotonic()
        ended = book.ended(batch, now)
        if ended and batch.output_file_id is None and batch.answers is not None:
            good = [a for a in batch.answers if a.outcome == "succeeded"]
            bad = [a for a in batch.answers if a.outcome != "succeeded"]
            if good:
                content = b"".join(_output_line(batch, a) for a in reversed(good))
                batch.output_file_id = files.add(content, "output.jsonl", "batch_output", None)
            if bad:
                content = b"".join(_output_line(batch, a) for a in bad)
                batch.error_file_id = files.add(content, "errors.jsonl", "batch_output", None)
        if batch.failed:
            status = "failed"
        elif not ended:
            status = "cancelling" if batch.cancelled is not None else "in_progress"
        elif batch.cancelled is not None:
            status = "cancelled"
        elif any(a.outcome == "expired" for a in batch.answers or ()):
            status = "expired"
        else:
            status = "completed"
        answers = batch.answers or []
        done = batch.finished(now, book.config) if not batch.failed else 0
        completed = sum(a.outcome == "succeeded" for a in answers) if ended else done
        failed = sum(a.outcome == "errored" for a in answers)
        end = batch.ended_at
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": {"object": "list", "data": batch.failed} if batch.failed else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "in_progress_at": None if batch.failed else batch.created_at,
            "expires_at": batch.created_at + 86400,
            "finalizing_at": end if status == "completed" else None,
            "completed_at": end if status == "completed" else None,
            "failed_at": batch.created_at if batch.failed else None,
            "expired_at": end if status == "expired" else None,
            "cancelling_at": batch.created_at if batch.cancelled is not None else None,
            "cancelled_at": end if status == "cancelled" else None,
            "request_counts": {
                "total": len(batch.requests),
                "completed": completed,
                "failed": failed,
            },
            "metadata": batch.metadata or None,
        }

    def page(rows: list[dict[str, Any]], after: str | None, limit: int) -> web.Response:
        ids = [row["id"] for row in rows]
        start = ids.index(after) + 1 if after in ids else 0
        data = rows[start : start + limit]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": start + limit < len(rows),
            }
        )

    def limit_of(request: web.Request, most: int) -> int:
        try:
            return max(1, min(most, int(request.query.get("limit", "20"))))
        except ValueError:
            return 20

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        purpose = str(form.get("purpose", ""))
        if not hasattr(upload, "file") or purpose != "batch":
            return _error(400, "a file and purpose=batch are required")
        expires = form.get("expires_after[seconds]")
        content = upload.file.read()  # type: ignore[union-attr]
        filename = str(getattr(upload, "filename", "") or "upload.jsonl")
        file_id = files.add(content, filename, purpose, int(str(expires)) if expires else None)
        found = files.get(file_id)
        assert found is not None
        return web.json_response(Files.shown(found))

    async def list_files(request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        rows = [
            Files.shown(f)
            for f in reversed(list(files.files.values()))
            if files.get(f["id"]) is not None and (purpose is None or f["purpose"] == purpose)
        ]
        if request.query.get("order") == "asc":
            rows.reverse()
        return page(rows, request.query.get("after"), limit_of(request, 10000))

    async def one_file(request: web.Request) -> web.Response:
        found = files.get(request.match_info["file_id"])
        if found is None:
            return _error(404, f"No such File object: {request.match_info['file_id']}")
        return web.json_response(Files.shown(found))

    async def file_content(request: web.Request) -> web.Response:
        found = files.get(request.match_info["file_id"])
        if found is None:
            return _error(404, f"No such File object: {request.match_info['file_id']}")
        return web.Response(body=found["content"], content_type="application/octet-stream")

    async def delete_file(request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if files.files.pop(file_id, None) is None:
            return _error(404, f"No such File object: {file_id}")
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def create(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "the body is not JSON")
        found = files.get(str(body.get("input_file_id", "")))
        if found is None:
            return _error(400, f"input file {body.get('input_file_id')!r} does not exist")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            return _error(400, "the simulator batches /v1/chat/completions only")
        try:
            requests = _read_requests(found["content"], endpoint)
        except ValueError as exc:
            return _error(400, f"invalid input file: {exc}")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16:
            return _error(400, "metadata must be an object of at most 16 strings")
        batch = book.submit(
            "openai",
            requests,
            "batch_",
            metadata={str(k): str(v)[:512] for k, v in metadata.items()},
            input_file_id=found["id"],
        )
        if book.lose_this_create():
            assert request.transport is not None
            request.transport.abort()  # the batch exists; its answer never arrives
            raise asyncio.CancelledError  # nothing more can be sent
        return web.json_response(shown(batch))

    async def retrieve(request: web.Request) -> web.Response:
        batch = book.batches.get(request.match_info["batch_id"])
        if batch is None or batch.shape != "openai":
            return _error(404, f"No batch found with id {request.match_info['batch_id']!r}")
        return web.json_response(shown(batch))

    async def list_batches(request: web.Request) -> web.Response:
        rows = [shown(b) for b in reversed(list(book.batches.values())) if b.shape == "openai"]
        return page(rows, request.query.get("after"), limit_of(request, 100))

    async def cancel(request: web.Request) -> web.Response:
        batch = book.batches.get(request.match_info["batch_id"])
        if batch is None or batch.shape != "openai":
            return _error(404, f"No batch found with id {request.match_info['batch_id']!r}")
        if batch.failed or book.ended(batch):
            return _error(409, f"Cannot cancel a batch with status {shown(batch)['status']!r}")
        book.cancel(batch)
        return web.json_response(shown(batch))

    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", one_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_delete("/v1/files/{file_id}", delete_file)
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel)
