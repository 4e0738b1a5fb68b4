"""Errors of the services a step calls: throttled, down, an answer that is not one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .running import HeadraceError

__all__ = [
    "CapacityRefused",
    "CircuitOpen",
    "MalformedResponse",
    "ModelInputError",
    "PromptError",
    "ProviderError",
    "StructuredOutputError",
    "Throttled",
]


class Throttled(HeadraceError):
    """Raised by a step to say that the provider refused the call for now (an HTTP 429).

    A step calling any API with any client raises it so that headrace can back
    off: :class:`~headrace.limits.retry.Retry` retries it, waiting at least
    ``retry_after`` seconds. (Exceptions of aiohttp, httpx, requests and the
    ``openai`` SDK that carry status 429 are recognised without it.)

    Args:
        retry_after: seconds the provider asked to wait, if it said.
        headers: the response's headers (``retry-after-ms``, ``x-ratelimit-*``).
    """

    def __init__(
        self,
        message: str = "throttled by the provider",
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def __reduce__(self) -> Any:
        return (_rebuild_throttled, (str(self), self.retry_after, self.headers))


def _rebuild_throttled(message: str, retry_after: float | None, headers: dict[str, str]) -> Any:
    return Throttled(message, retry_after=retry_after, headers=headers)


class CircuitOpen(HeadraceError):
    """A call was refused without being made: the step's circuit breaker is open."""


class ProviderError(HeadraceError):
    """The provider answered with an error status other than 429.

    Retried (by the default :class:`~headrace.limits.retry.Retry`) for a 5xx;
    not for a 4xx, which says the request itself is wrong.

    Attributes:
        status: the HTTP status.
        headers: the response's headers.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.headers = dict(headers or {})

    def __reduce__(self) -> Any:
        return (type(self), (self.status, str(self).partition(": ")[2], self.headers))


class MalformedResponse(HeadraceError, ConnectionError):
    """The provider's answer could not be read (not JSON, cut short, missing fields).
    Retried like a broken connection."""


class CapacityRefused(HeadraceError):
    """The provider refused a flex-tier request for lack of capacity (OpenAI's 429
    "resource unavailable", Groq's 498 "capacity exceeded"); nothing was billed.

    It says the tier is full, not that the client sends too fast: it lowers no
    learned rate limit, opens no circuit and is not retried by
    :class:`~headrace.limits.retry.Retry`; the flex tier waits and sends the request
    again, or online (see :class:`~headrace.llm.tier.FlexTier`).

    Attributes:
        http_status: the HTTP status of the refusal (named so that it is not read as a
            429 by the rate limit).
    """

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(f"HTTP {http_status}: {message}")
        self.http_status = http_status

    def __reduce__(self) -> Any:
        return (type(self), (self.http_status, str(self).partition(": ")[2]))


class AnswerLost(HeadraceError):
    """A request to a provider's batch API whose answer did not come (a timeout, a dropped
    connection): it may or may not have taken effect. The batch tier never sends such
    a request again without looking first whether it took effect."""


class PromptError(HeadraceError, ValueError):
    """A record cannot fill a prompt: a field is missing or a template failed on it."""


class StructuredOutputError(HeadraceError, ValueError):
    """The model's answer did not validate against the output model (after its repair)."""


class ModelInputError(HeadraceError, TypeError):
    """An item has no text where a model step looks for it."""
