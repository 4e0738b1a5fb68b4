"""What one batch request is called, and what its answer means."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ...errors import ProviderError
from ..replies import Reply, message_content

__all__ = ["custom_id", "outcome"]

_REQUEUED = ("batch_expired", "batch_cancelled")


def custom_id(step: str, body: dict[str, Any], attempt: int) -> str:
    """A request's name in a batch: 40 hex digits of (step, body, attempt)."""
    material = orjson.dumps([step, body, attempt], option=orjson.OPT_SORT_KEYS)
    return "hr-" + hashlib.sha256(material).hexdigest()[:40]


def outcome(row: dict[str, Any]) -> Reply | ProviderError | None:
    """A request's row as its answer, its error, or ``None`` (expired or cancelled:
    to be asked again)."""
    response = row.get("response")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            return Reply(message_content(body), body)
        try:
            message = str(body["error"]["message"])  # type: ignore[index]
        except (KeyError, TypeError):
            message = str(body)[:300]
        return ProviderError(status if isinstance(status, int) else 500, message, {})
    error = row.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if code in _REQUEUED:
        return None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    return ProviderError(500, f"{code}: {message}", {})
