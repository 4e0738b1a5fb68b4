"""The flex tier: online requests with ``service_tier="flex"``, answered more slowly
at a lower price and sometimes refused for lack of capacity; and what each
provider's flex is (:data:`FLEX_APIS`).

Each provider's flex differs, so a client declares whose it speaks
(``Client(flex_api=...)``, guessed from the host):

======== ======================= ============================ ===========================
provider price                   capacity refusal             a model without flex
======== ======================= ============================ ===========================
openai   the batch price         429 "resource unavailable"   400, no fallback
azure    half the standard price 429 "resource unavailable"   400, no fallback
gemini   half the standard price 429 "resource unavailable"   400, no fallback
groq     the standard price      498 "capacity exceeded"      (every model has flex)
======== ======================= ============================ ===========================

A refusal costs nothing and says the tier is full, not that the client sends too
fast: it lowers no learned rate limit and opens no circuit (see
:class:`~headrace.errors.CapacityRefused`). A 400 for a model without flex is the
request's own error, shown in the dead letter; it is not sent online behind the
user's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ...errors import PipelineError
from ...values.checks import positive_int
from ...values.durations import to_seconds

__all__ = ["FLEX_APIS", "FlexApi", "FlexTier", "flex_api_of"]

MAX_BACKOFF_S = 60.0
"""The longest wait between two capacity refusals of one request."""


@dataclass(frozen=True, slots=True)
class FlexTier:
    """The flex tier, with its settings: ``tier=hr.llm.FlexTier(refusals=3)``.

    Args:
        timeout: the most one flex request may take (seconds or ``"15m"``; OpenAI
            advises 15 minutes, flex answers being slower). It replaces the client's
            ``timeout`` for the step's flex requests.
        refusals: capacity refusals one request may draw before it gives up on flex
            (its waits between them start at ``backoff`` and double, up to a minute).
        backoff: the first wait after a refusal (seconds or ``"1s"``).
        fallback: what a request refused ``refusals`` times does: ``"online"`` (the
            default) sends it at the standard price and tier, counted in the summary;
            ``None`` fails the item with :class:`~headrace.errors.CapacityRefused`
            (a dead letter, sent again by ``--retry-dead``), never paying full price.
    """

    timeout: float | str = 900.0
    refusals: int = 5
    backoff: float | str = 1.0
    fallback: Literal["online"] | None = "online"

    def __post_init__(self) -> None:
        if to_seconds(self.timeout, option="FlexTier timeout") <= 0:
            raise PipelineError("FlexTier timeout must be more than 0 seconds")
        positive_int(self.refusals, "FlexTier refusals")
        to_seconds(self.backoff, option="FlexTier backoff")
        if self.fallback not in ("online", None):
            raise PipelineError(
                f"FlexTier fallback must be 'online' or None, got {self.fallback!r}"
            )

    @property
    def timeout_s(self) -> float:
        """``timeout`` in seconds."""
        return to_seconds(self.timeout, option="FlexTier timeout")

    @property
    def backoff_s(self) -> float:
        """``backoff`` in seconds."""
        return to_seconds(self.backoff, option="FlexTier backoff")

    def describe(self) -> dict[str, Any]:
        """The settings as plain data."""
        return {
            "timeout_s": self.timeout_s,
            "refusals": self.refusals,
            "backoff_s": self.backoff_s,
            "fallback": self.fallback,
        }


@dataclass(frozen=True, slots=True)
class FlexApi:
    """What one provider's flex tier is.

    Attributes:
        name: the provider (``"openai"``, ``"azure"``, ``"gemini"``, ``"groq"``).
        price_share: a flex request's price against the standard one, where the price
            table has no flex (or, ``variants`` second, batch) price for the model.
        variants: the maintained price table's variants that price flex here, tried in
            order (OpenAI prices flex at its batch rates).
        refusal_statuses: the HTTP statuses of a capacity refusal.
    """

    name: str
    price_share: float
    variants: tuple[tuple[str, str], ...]
    refusal_statuses: frozenset[int]


_FLEX = ("service_tier", "flex")
_BATCH = ("processing", "batch")

FLEX_APIS: dict[str, FlexApi] = {
    "openai": FlexApi("openai", 0.5, (_FLEX, _BATCH), frozenset({429})),
    "azure": FlexApi("azure", 0.5, (_FLEX,), frozenset({429})),
    "gemini": FlexApi("gemini", 0.5, (_FLEX,), frozenset({429})),
    "groq": FlexApi("groq", 1.0, (), frozenset({498})),
}
"""Each provider's flex tier, by the name ``Client(flex_api=...)`` takes."""


def flex_api_of(base_url: str, named: str | None) -> FlexApi | None:
    """The flex tier a client at ``base_url`` speaks: ``named``, or guessed from the host
    (OpenAI's shape for any other host, as OpenAI-compatible servers copy it; none at
    Anthropic, which has no flex tier).

    Raises:
        PipelineError: ``named`` is not a key of :data:`FLEX_APIS`.
    """
    if named is not None:
        if named not in FLEX_APIS:
            raise PipelineError(
                f"Client flex_api must be one of {', '.join(sorted(FLEX_APIS))}, got {named!r}"
            )
        return FLEX_APIS[named]
    host = urlsplit(base_url).hostname or ""
    if host == "api.anthropic.com":
        return None
    if host == "api.groq.com":
        return FLEX_APIS["groq"]
    if host.endswith((".openai.azure.com", ".services.ai.azure.com")):
        return FLEX_APIS["azure"]
    if host == "generativelanguage.googleapis.com":
        return FLEX_APIS["gemini"]
    return FLEX_APIS["openai"]
