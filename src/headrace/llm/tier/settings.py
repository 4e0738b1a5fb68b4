"""How an LLM step's requests are served: ``tier="online"`` (each request answered
now), ``tier="flex"`` / :class:`~headrace.llm.tier.flex.FlexTier` (answered now,
more slowly, at a lower price) or ``tier="batch"`` / :class:`BatchTier` (gathered
into provider batches, answered within a day at half the price)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import PipelineError
from ...values.checks import positive_int
from ...values.durations import to_seconds

__all__ = ["BATCH_PRICE_SHARE", "BatchTier"]

BATCH_PRICE_SHARE = 0.5
"""What a batch request costs against the online price. OpenAI's Batch API and
Anthropic's Message Batches both bill 50% of the standard price, input and output."""

MAX_REQUESTS = 50_000
"""The most requests one OpenAI batch file may hold."""

MAX_FILE_BYTES = 190 * 1024 * 1024
"""The most bytes of requests in one batch (OpenAI takes files of up to 200 MB)."""


@dataclass(frozen=True, slots=True)
class BatchTier:
    """The batch tier, with its settings: ``tier=hr.llm.BatchTier(poll="1m")``.

    Args:
        max_requests: the most requests in one provider batch (OpenAI's limit: 50,000).
        gather: how long the step waits for more requests after the last one before it
            submits what it has (seconds or ``"5s"``). A batch leaves as soon as it is
            full, or every call the step may make at once (its ``concurrency``) is
            waiting for an answer; this wait is for the end of the source.
        poll: the longest wait between two looks at a batch in progress (the first
            looks come sooner, a second, then doubling up to this).
        completion_window: the provider's completion window (OpenAI: ``"24h"``).
    """

    max_requests: int = MAX_REQUESTS
    gather: float | str = 2.0
    poll: float | str = 60.0
    completion_window: str = "24h"

    def __post_init__(self) -> None:
        positive_int(self.max_requests, "BatchTier max_requests")
        if self.max_requests > MAX_REQUESTS:
            raise PipelineError(f"BatchTier max_requests is at most {MAX_REQUESTS:,}")
        if to_seconds(self.poll, option="BatchTier poll") <= 0:
            raise PipelineError("BatchTier poll must be more than 0 seconds")
        to_seconds(self.gather, option="BatchTier gather")

    @property
    def gather_s(self) -> float:
        """``gather`` in seconds."""
        return to_seconds(self.gather, option="BatchTier gather")

    @property
    def window_s(self) -> float:
        """``completion_window`` in seconds."""
        return to_seconds(self.completion_window, option="BatchTier completion_window")

    @property
    def poll_s(self) -> float:
        """``poll`` in seconds."""
        return to_seconds(self.poll, option="BatchTier poll")

    def describe(self) -> dict[str, Any]:
        """The settings as plain data (part of the step's definition)."""
        return {
            "max_requests": self.max_requests,
            "gather_s": self.gather_s,
            "poll_s": self.poll_s,
            "completion_window": self.completion_window,
        }
