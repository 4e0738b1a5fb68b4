"""Anthropic's Message Batches as the batch tier uses them: requests sent inline,
results streamed out of order, and no metadata to find a lost batch by.

The tier's requests are OpenAI chat bodies (what every LLM step builds); here they
become Messages params (system messages into ``system``, ``max_tokens`` required,
a JSON schema ``response_format`` into ``output_format``), and each result becomes
the OpenAI-shaped row the tier reads (a chat completion, an error, or an expired or
cancelled request).

How a lost batch is found again: a batch carries no tag, so the candidates are the
provider's batches created since the intent (less :data:`LOOK_BACK_S`) with as many
requests, that no other intent of the run holds. One candidate is the batch; among
several, the one whose results name exactly the intent's requests, once they end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...errors import AnswerLost, MalformedResponse
from .endpoint import Endpoint

if TYPE_CHECKING:
    from ..connection import ClientSettings
    from .ledger import Intent

__all__ = ["AnthropicBatches", "messages_params"]

VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent."""

DEFAULT_MAX_TOKENS = 4096
"""A request's ``max_tokens`` when the step does not set one (Anthropic requires it)."""

LOOK_BACK_S = 600
"""How far before an intent's time a search for its batch still looks (clocks differ)."""

_COUNTED = ("processing", "succeeded", "errored", "canceled", "expired")


def messages_params(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat body as the params of an Anthropic Messages request."""
    system = [str(m.get("content", "")) for m in body["messages"] if m.get("role") == "system"]
    params: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m["role"], "content": m.get("content", "")}
            for m in body["messages"]
            if m.get("role") in ("user", "assistant")
        ],
    }
    if system:
        params["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p"):
        if name in body:
            params[name] = body[name]
    response_format = body.get("response_format") or {}
    schema = (response_format.get("json_schema") or {}).get("schema")
    if response_format.get("type") == "json_schema" and isinstance(schema, dict):
        params["output_format"] = {"type": "json_schema", "schema": schema}
    return params


def _row(result: dict[str, Any]) -> dict[str, Any]:
    """One result line as the OpenAI-shaped row the tier reads."""
    name = result.get("custom_id")
    outcome = result.get("result") or {}
    kind = outcome.get("type")
    if kind == "succeeded":
        message = outcome.get("message") or {}
        blocks = message.get("content") or []
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict))
        usage = message.get("usage") or {}
        body = {
            "model": message.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {
                "prompt_tokens": usage.get("input_tokens", 0),
                "completion_tokens": usage.get("output_tokens", 0),
            },
        }
        return {"custom_id": name, "response": {"status_code": 200, "body": body}}
    if kind == "errored":
        error = (outcome.get("error") or {}).get("error") or {}
        status = 400 if error.get("type") == "invalid_request_error" else 500
        body = {"error": {"message": str(error.get("message", "errored"))}}
        return {"custom_id": name, "response": {"status_code": status, "body": body}}
    code = "batch_cancelled" if kind == "canceled" else "batch_expired"
    return {"custom_id": name, "error": {"code": code, "message": str(kind)}}


class AnthropicBatches(Endpoint):
    """One Anthropic endpoint's message batches (``client``'s base URL and key)."""

    cancel_path = "/messages/batches/{id}/cancel"

    name = "anthropic"
    tagged = False
    """A batch carries no tag: it is looked for only where a create may have been sent."""

    def __init__(self, client: ClientSettings) -> None:
        secret = client.api_key()
        auth = {"anthropic-version": VERSION}
        if secret is not None:
            auth["x-api-key"] = secret.reveal()
        super().__init__(client, auth, secret)

    async def create(
        self, intent: Intent, content: bytes, run: str, completion_window: str
    ) -> dict[str, Any]:
        """Create the intent's batch with its requests inline, once (no retry)."""
        requests = [
            {"custom_id": row["custom_id"], "params": messages_params(row["body"])}
            for row in map(orjson.loads, content.splitlines())
        ]
        return await self._json("POST", "/messages/batches", json={"requests": requests})

    async def find(self, intent: Intent, known: set[str]) -> dict[str, Any] | None:
        """The batch created for the intent (see the module's notes).

        Raises:
            AnswerLost: several candidates, not all ended yet: look again later.
        """
        candidates = []
        after: str | None = None
        while True:
            page = await self._json(
                "GET",
                "/messages/batches",
                params={"limit": "100", **({"after_id": after} if after else {})},
            )
            rows = [r for r in page.get("data") or [] if isinstance(r, dict)]
            for row in rows:
                total = sum(int((row.get("request_counts") or {}).get(k, 0)) for k in _COUNTED)
                if row.get("id") not in known and total == len(intent.requests):
                    candidates.append(row)
            if not page.get("has_more") or not rows or _older(rows[-1], intent.created):
                break
            after = str(rows[-1].get("id"))
        candidates = [c for c in candidates if not _older(c, intent.created)]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        wanted = set(intent.requests)
        for candidate in candidates:
            if not self.ended(candidate):
                raise AnswerLost("several batches could be the lost one; waiting for them to end")
            names = {name for name, _ in _names(await self.answers(candidate))}
            if names == wanted:
                found: dict[str, Any] = candidate
                return found
        return None

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """The batch as the provider shows it now."""
        return await self._json("GET", f"/messages/batches/{batch_id}")

    async def answers(self, batch: dict[str, Any]) -> bytes:
        """What an ended batch answered, as OpenAI-shaped rows (one a line)."""
        url = batch.get("results_url")
        if not isinstance(url, str) or not url:
            raise MalformedResponse(f"batch {batch.get('id')}: ended without results_url")
        path = url.split(self.base_url, 1)[1] if url.startswith(self.base_url) else None
        if path is None:
            raise MalformedResponse(f"batch {batch.get('id')}: results elsewhere than the API")
        raw = await self._raw(path)
        lines = (orjson.dumps(_row(orjson.loads(line))) for line in raw.splitlines() if line)
        return b"".join(line + b"\n" for line in lines)

    @staticmethod
    def ended(batch: dict[str, Any]) -> bool:
        """Whether the batch will change no more."""
        return batch.get("processing_status") == "ended"

    @staticmethod
    def refusal(batch: dict[str, Any]) -> tuple[str, str] | None:
        """Anthropic refuses a batch at its create (a 4xx), never after."""
        return None

    @staticmethod
    def progress(batch: dict[str, Any]) -> tuple[str, dict[str, int]]:
        """The batch's status and its requests' counts, as the ledger keeps them."""
        counts = batch.get("request_counts") or {}
        kept = {k: v for k, v in counts.items() if type(v) is int}
        return str(batch.get("processing_status", "")), kept


def _older(row: dict[str, Any], since: float) -> bool:
    """Whether a listed batch was created before ``since`` less :data:`LOOK_BACK_S`."""
    from datetime import datetime

    created = row.get("created_at")
    try:
        moment = datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return moment < since - LOOK_BACK_S


def _names(content: bytes) -> list[tuple[str, Any]]:
    return [(row.get("custom_id"), row) for row in map(orjson.loads, content.splitlines())]
