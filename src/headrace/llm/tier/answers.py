"""What one batch request is called, what its answer means, and how it is counted."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import ProviderError
from ..replies import Reply, message_content

if TYPE_CHECKING:
    from ..prices import Price
    from ..stats import Costs, LLMStats

__all__ = ["count_answer", "custom_id", "outcome"]

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


def count_answer(
    costs: Costs, online: Price | None, stats: LLMStats, model: str, answer: Reply
) -> None:
    """Count a batch answer's tokens and its cost at the batch price (``costs``), and
    what it would have cost at the ``online`` price."""
    _, usd = costs.count(stats, model, answer)
    stats.batch_requests += 1
    stats.batch_cost_usd += usd
    if online is not None:
        stats.online_cost_usd += online.cost(*answer.usage)


class _Unfinished(Exception):
    """A request a cancelled batch left unanswered while the auto tier rescues its
    requests: the auto tier sends it online (never raised to a step otherwise)."""
