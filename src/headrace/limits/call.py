"""One attempt's passage through a gate (:class:`Call`), and the shape of a policy
at work in a run (:class:`Policy`): what the gate and each policy share."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import Token
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..metrics import StepMetrics
    from .rate import Permit

__all__ = ["Call", "Policy"]


class Call:
    """One attempt's passage through a gate: what the policies need and leave for each other.

    Attributes:
        name: who calls (a step's name, an endpoint), for messages.
        value: what the call is made with (an item, a request body).
        metrics: the step's metrics the policies count into, if any.
        prompt_tokens: the request's counted prompt tokens (else the rate estimates).
        started: when the attempt reached the gate (``perf_counter``), or when an open
            circuit let it go (its hold is counted apart, in ``hold_s``).
        slotted: when it had its concurrency slot; ``admitted``: when the call began.
        called: whether the call itself began (a policy may refuse it before).
        output: what the call returned; ``usage`` what to read its tokens from, when
            not the output; ``headers`` the answer's headers, for an auto rate limit.
        permit: the rate limit's reservation (``observing``: its ``hr.observe()``
            context); ``probe``: whether the circuit let it go as its probe;
            ``reserved``: the budget's reservation (tokens, dollars).
    """

    __slots__ = (
        "admitted",
        "called",
        "headers",
        "metrics",
        "name",
        "observing",
        "output",
        "permit",
        "probe",
        "prompt_tokens",
        "reserved",
        "slotted",
        "started",
        "usage",
        "value",
    )

    def __init__(
        self,
        name: str,
        value: Any,
        metrics: StepMetrics | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        self.name = name
        self.value = value
        self.metrics = metrics
        self.prompt_tokens = prompt_tokens
        self.started = self.slotted = self.admitted = perf_counter()
        self.called = False
        self.output: Any = None
        self.usage: Any = None
        self.headers: dict[str, str] | None = None
        self.permit: Permit | None = None
        self.observing: Token[Any] | None = None
        self.probe = False
        self.reserved: tuple[int, float] = (0, 0.0)


class Policy(Protocol):
    """One policy of a gate, at work in one run."""

    def enter(self, call: Call) -> Awaitable[None] | None:
        """Take this policy's turn for ``call``: ``None`` when it was had at once, else an
        awaitable that waits for it (either may raise to refuse the call)."""

    def leave(self, call: Call, error: BaseException | None) -> Awaitable[None] | None:
        """``call`` ended: ``error`` is ``None`` on success (``call.output`` holds the
        output), the exception, or the cancellation. ``None``, or an awaitable to finish."""
