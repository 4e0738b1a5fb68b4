"""OpenAI's batch API as the batch tier uses it: files, batches, and finding either
again after a kill or a lost answer. Every OpenAI-compatible endpoint that copies
``/v1/files`` and ``/v1/batches`` (Azure OpenAI, Together, Groq, Mistral, ...) gets
this shape.

How a lost batch is found again: the uploaded file is named after the intent
(``headrace-<intent>.jsonl``), and the batch carries the intent in its
``metadata``; listing the provider's files or batches (newest first, no further
back than the intent's time) finds them. Nothing here retries a create: a create
whose answer did not come is :class:`AnswerLost`, and the caller looks before it
sends another.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ...errors import MalformedResponse, ProviderError
from ..secrets import redact

if TYPE_CHECKING:
    from ..connection import ClientSettings

__all__ = ["AnswerLost", "OpenAIBatches"]

FILE_EXPIRY_S = 7 * 24 * 3600
"""How long an uploaded request file lives at the provider (then it is deleted)."""

LOOK_BACK_S = 600
"""How far before an intent's time a search for its batch still looks (clocks differ)."""


class AnswerLost(Exception):
    """A request whose answer did not come: it may or may not have taken effect."""


def file_name(intent_id: str) -> str:
    """The name an intent's request file is uploaded under."""
    return f"headrace-{intent_id}.jsonl"


class OpenAIBatches:
    """One endpoint's files and batches (``client``'s base URL, key and headers)."""

    name = "openai"

    def __init__(self, client: ClientSettings) -> None:
        self.base_url = client.base_url
        secret = client.api_key()
        self.secret = secret
        headers = dict(client.headers)
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret.reveal()}"
        self.session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=max(60.0, client.timeout))
        )

    async def close(self) -> None:
        """Close the connections."""
        await self.session.close()

    async def _json(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        """One request; its JSON answer. Connection errors and timeouts are
        :class:`AnswerLost`; an error status is :class:`ProviderError`."""
        try:
            async with self.session.request(method, self.base_url + path, **request) as answer:
                raw = await answer.read()
                status = answer.status
                headers = {k.lower(): v for k, v in answer.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            try:
                detail = orjson.loads(raw)["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = raw.decode("utf-8", "replace")
            message = redact(f"{method} {path}: {str(detail)[:500]}", self.secret)
            raise ProviderError(status, message, headers)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedResponse(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise MalformedResponse(f"{method} {path}: the answer is not a JSON object")
        return parsed

    async def _pages(self, path: str, params: dict[str, str]) -> Any:
        """The rows of a listing, page after page (newest first)."""
        after: str | None = None
        while True:
            query = dict(params, **({"after": after} if after else {}))
            page = await self._json("GET", path, params=query)
            rows = page.get("data")
            if not isinstance(rows, list):
                raise MalformedResponse(f"GET {path}: a listing without data")
            for row in rows:
                if isinstance(row, dict):
                    yield row
            if not page.get("has_more") or not rows:
                return
            after = str(rows[-1].get("id", ""))

    async def find_upload(self, intent_id: str) -> str | None:
        """The id of the intent's uploaded request file, if the provider holds one."""
        wanted = file_name(intent_id)
        async for row in self._pages("/files", {"purpose": "batch", "limit": "10000"}):
            if row.get("filename") == wanted and isinstance(row.get("id"), str):
                return str(row["id"])
        return None

    async def upload(self, intent_id: str, content: bytes) -> str:
        """Upload the intent's request file; its id."""
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("expires_after[anchor]", "created_at")
        form.add_field("expires_after[seconds]", str(FILE_EXPIRY_S))
        form.add_field(
            "file", content, filename=file_name(intent_id), content_type="application/jsonl"
        )
        answer = await self._json("POST", "/files", data=form)
        if not isinstance(answer.get("id"), str):
            raise MalformedResponse("POST /files: an upload without an id")
        return str(answer["id"])

    async def create(
        self, file_id: str, intent_id: str, run: str, completion_window: str
    ) -> dict[str, Any]:
        """Create the batch, once (no retry: see :class:`AnswerLost`)."""
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": completion_window,
            "metadata": {"headrace_intent": intent_id, "headrace_run": run},
        }
        return await self._json("POST", "/batches", json=body)

    async def find(self, intent_id: str, since: float) -> dict[str, Any] | None:
        """The batch created for the intent, looking back no further than ``since``
        (Unix seconds) less :data:`LOOK_BACK_S`."""
        oldest = since - LOOK_BACK_S
        async for row in self._pages("/batches", {"limit": "100"}):
            metadata = row.get("metadata") or {}
            if isinstance(metadata, dict) and metadata.get("headrace_intent") == intent_id:
                found: dict[str, Any] = row
                return found
            created = row.get("created_at")
            if isinstance(created, int | float) and created < oldest:
                return None
        return None

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """The batch as the provider shows it now."""
        return await self._json("GET", f"/batches/{batch_id}")

    async def download(self, file_id: str) -> bytes:
        """A file's content (a batch's output or error file)."""
        path = f"/files/{file_id}/content"
        try:
            async with self.session.get(self.base_url + path) as answer:
                raw = await answer.read()
                if answer.status != 200:
                    message = redact(
                        f"GET {path}: {raw[:300].decode('utf-8', 'replace')}", self.secret
                    )
                    raise ProviderError(answer.status, message, {})
                return raw
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AnswerLost(f"GET {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def ended(batch: dict[str, Any]) -> bool:
        """Whether the batch will change no more."""
        return batch.get("status") in ("completed", "failed", "expired", "cancelled")

    @staticmethod
    def refusal(batch: dict[str, Any]) -> tuple[str, str] | None:
        """``(code, message)`` of a batch the provider failed whole, else ``None``."""
        if batch.get("status") != "failed":
            return None
        errors = (batch.get("errors") or {}).get("data") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        return str(first.get("code") or "failed"), str(first.get("message") or "batch failed")

    @staticmethod
    def now() -> float:
        """The time an intent is stamped with (Unix seconds, as the provider's)."""
        return time.time()
