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

from typing import TYPE_CHECKING, Any

import aiohttp

from ...errors import MalformedResponse
from .endpoint import Endpoint

if TYPE_CHECKING:
    from ..connection import ClientSettings
    from .ledger import Intent

__all__ = ["OpenAIBatches"]

FILE_EXPIRY_S = 7 * 24 * 3600
"""How long an uploaded request file lives at the provider (then it is deleted)."""

LOOK_BACK_S = 600
"""How far before an intent's time a search for its batch still looks (clocks differ)."""


def file_name(intent_id: str) -> str:
    """The name an intent's request file is uploaded under."""
    return f"headrace-{intent_id}.jsonl"


class OpenAIBatches(Endpoint):
    """One endpoint's files and batches (``client``'s base URL, key and headers)."""

    name = "openai"
    tagged = True
    """A batch carries its intent (``metadata``): looking for it never finds another's."""

    def __init__(self, client: ClientSettings) -> None:
        secret = client.api_key()
        auth = {} if secret is None else {"Authorization": f"Bearer {secret.reveal()}"}
        super().__init__(client, auth, secret)

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
        self, intent: Intent, content: bytes, run: str, completion_window: str
    ) -> dict[str, Any]:
        """Create the intent's batch from its uploaded file, once (no retry: see
        :class:`AnswerLost`)."""
        body = {
            "input_file_id": intent.file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": completion_window,
            "metadata": {"headrace_intent": intent.id, "headrace_run": run},
        }
        return await self._json("POST", "/batches", json=body)

    async def find(self, intent: Intent, known: set[str]) -> dict[str, Any] | None:
        """The batch created for the intent (its metadata names it), looking back no
        further than the intent's time less :data:`LOOK_BACK_S`."""
        oldest = intent.created - LOOK_BACK_S
        async for row in self._pages("/batches", {"limit": "100"}):
            metadata = row.get("metadata") or {}
            if isinstance(metadata, dict) and metadata.get("headrace_intent") == intent.id:
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
        return await self._raw(f"/files/{file_id}/content")

    async def answers(self, batch: dict[str, Any]) -> bytes:
        """What an ended batch answered: its output file, then its error file."""
        content = b""
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if isinstance(file_id, str):
                content += await self.download(file_id)
        return content

    @staticmethod
    def ended(batch: dict[str, Any]) -> bool:
        """Whether the batch will change no more."""
        return batch.get("status") in ("completed", "failed", "expired", "cancelled")

    @staticmethod
    def progress(batch: dict[str, Any]) -> tuple[str, dict[str, int]]:
        """The batch's status and its requests' counts, as the ledger keeps them."""
        counts = batch.get("request_counts") or {}
        kept = {k: v for k, v in counts.items() if type(v) is int}
        return str(batch.get("status", "")), kept

    @staticmethod
    def refusal(batch: dict[str, Any]) -> tuple[str, str] | None:
        """``(code, message)`` of a batch the provider failed whole, else ``None``."""
        if batch.get("status") != "failed":
            return None
        errors = (batch.get("errors") or {}).get("data") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        return str(first.get("code") or "failed"), str(first.get("message") or "batch failed")
