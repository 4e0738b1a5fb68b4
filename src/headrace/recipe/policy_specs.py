"""A recipe's policy sections (``retry``, ``rate``, ``timeout``, ``cache``, ``batch``) and
model aliases, checked by Pydantic: each takes exactly the keyword arguments of the
Python object it becomes (:class:`~headrace.Retry`, :class:`~headrace.Rate`,
:class:`~headrace.Timeout`, :class:`~headrace.Cache`, :class:`~headrace.Batch`), so
a recipe and Python code say the same thing the same way."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BatchSpec",
    "CacheSpec",
    "ModelAlias",
    "RateSpec",
    "RetrySpec",
    "Seconds",
    "Strict",
    "TimeoutSpec",
]


Seconds = float | str
"""A duration: seconds, or text such as ``"500ms"``, ``"30s"``, ``"2m"``."""


class Strict(BaseModel):
    """A section that refuses keys it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def given(self) -> dict[str, Any]:
        """The keys the recipe set, as keyword arguments."""
        return {k: getattr(self, k) for k in self.model_fields_set}


class RetrySpec(Strict):
    """:class:`~headrace.Retry`: ``{attempts: 6, backoff: 1s}``."""

    attempts: int = Field(3, ge=1)
    backoff: Seconds = 0.5
    max_delay: Seconds = 30.0
    budget: float | None = Field(0.2, ge=0)
    budget_refill: float = Field(10.0, gt=0)


class RateSpec(Strict):
    """:class:`~headrace.Rate`: ``{requests: 500, tokens: 200000, per: minute}``, or
    ``auto`` (:meth:`~headrace.Rate.auto`: learned from the provider's headers and 429s)."""

    auto: bool = False
    requests: float | None = Field(None, gt=0)
    tokens: float | None = Field(None, gt=0)
    per: Seconds = "minute"
    burst: float | None = Field(None, gt=0)
    token_burst: float | None = Field(None, gt=0)
    headroom: Seconds = 0.05
    shared: str | None = None
    key: str = "default"
    outage_share: float = Field(0.25, gt=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        return {"auto": True} if value == "auto" else value

    @model_validator(mode="after")
    def _some_limit(self) -> RateSpec:
        if not self.auto and self.requests is None and self.tokens is None:
            raise ValueError("a rate needs requests:, tokens:, or the value auto")
        if self.auto and (self.requests is not None or self.tokens is not None):
            raise ValueError("auto learns the limit; give it without requests: or tokens:")
        if self.auto and (self.burst is not None or self.token_burst is not None):
            raise ValueError("auto learns the limit; give it without burst: or token_burst:")
        return self


class TimeoutSpec(Strict):
    """:class:`~headrace.Timeout`: ``30s`` (per attempt) or ``{attempt: 30s, total: 2m}``."""

    attempt: Seconds | None = None
    total: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"attempt": value} if isinstance(value, int | float | str) else value


class CacheSpec(Strict):
    """:class:`~headrace.Cache`: ``true`` or ``{tiers: [memory, sqlite], ttl: 7d}``."""

    tiers: list[str] = ["memory", "sqlite"]
    ttl: Seconds | None = None
    max_items: int = Field(100_000, ge=1)
    path: str | None = None
    version: str | None = None


class BatchSpec(Strict):
    """:class:`~headrace.Batch`: ``{max_size: 64, max_wait: 10ms}``."""

    max_size: int = Field(64, ge=1)
    max_wait: Seconds = "10ms"


class ModelAlias(Strict):
    """A model alias: one :class:`~headrace.llm.Client` with its own rate limit and pool.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` (else OpenAI's); the key comes
    from the environment variable ``api_key_env`` or the secrets file, never the recipe.
    """

    provider: Literal["openai"] = "openai"
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    rate: RateSpec | None = None
    retry: RetrySpec | None = None
    timeout: float = Field(60.0, gt=0)
    connections: int = Field(64, ge=1)
