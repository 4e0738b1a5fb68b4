"""Errors of the services a step calls: throttled, down, an answer that is not one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .running import HeadraceError

__all__ = [
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
