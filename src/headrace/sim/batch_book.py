"""The simulated provider's batches: what was submitted, how far each has got, the bill.

Both batch shapes the simulator speaks (OpenAI's files and batches,
:mod:`headrace.sim.batches`; Anthropic's message batches,
:mod:`headrace.sim.message_batches`) keep their batches here. A batch's requests
finish one after another over the configured turnaround; a batch ends at its
turnaround (completed, or expired with only ``batch_finish_share`` of them done) or
when cancelled (the requests due shortly after the cancel still finish). When a
batch ends, its answers are made (the same answers the online endpoint gives) and
the finished requests are billed: ``stats()["batch"]`` counts them, and counts a
request body billed twice.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ..limits.usage import estimate_tokens
from .chat import chat_reply, digest
from .config import SimConfig

__all__ = ["Answer", "BatchBook", "SimBatch"]

CANCEL_GRACE_S = 0.05
"""How long after a cancel the requests already due still finish (and are billed)."""


@dataclass(slots=True)
class Answer:
    """One request's end: ``"succeeded"`` (with the reply), ``"errored"``, ``"expired"``
    or ``"canceled"``."""

    custom_id: str
    outcome: str
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    status: int = 200


@dataclass(slots=True)
class SimBatch:
    """One submitted batch and how far it has got."""

    id: str
    shape: str  # "openai" or "anthropic"
    requests: list[tuple[str, dict[str, Any]]]
    model: str
    tokens: int
    created: float  # this process's monotonic clock
    created_at: int  # Unix seconds, as the APIs show it
    metadata: dict[str, str] = field(default_factory=dict)
    input_file_id: str = ""
    failed: list[dict[str, Any]] = field(default_factory=list)
    cancelled: float | None = None
    answers: list[Answer] | None = None  # once it has ended
    ended_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    turnaround_s: float = 0.0  # drawn when it was created

    def ends(self) -> float:
        """When it ends (monotonic), or has ended."""
        if self.failed:
            return self.created
        if self.cancelled is not None:
            return min(self.cancelled + CANCEL_GRACE_S, self.created + self.turnaround_s)
        return self.created + self.turnaround_s

    def due(self, index: int) -> float:
        """When request ``index`` finishes, if the batch lasts that long."""
        return self.created + self.turnaround_s * (index + 1) / max(1, len(self.requests))

    def finished(self, now: float, config: SimConfig) -> int:
        """How many of its requests have finished by ``now``."""
        end = min(now, self.ends())
        done = sum(1 for i in range(len(self.requests)) if self.due(i) <= end)
        return min(done, math.ceil(len(self.requests) * config.batch_finish_share - 1e-9))


class BatchBook:
    """Every batch the simulated provider holds, and what it billed."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """No batch, no bill."""
        self.batches: dict[str, SimBatch] = {}
        self.ids = itertools.count(1)
        self.counts: dict[str, int] = {
            "creates": 0,
            "creates_lost": 0,
            "failed_validation": 0,
            "billed_requests": 0,
            "billed_prompt_tokens": 0,
            "billed_completion_tokens": 0,
            "billed_again": 0,
            "cancels": 0,
        }
        self.billed: set[int] = set()
        self.rng = random.Random(self.config.seed + 2)  # the turnarounds' draws

    def new_id(self, prefix: str) -> str:
        """A fresh id: ``batch_...``, ``file-...``, ``msgbatch_...``."""
        return f"{prefix}{next(self.ids):06d}{random.getrandbits(32):08x}"

    def lose_this_create(self) -> bool:
        """Count a create; whether its answer is to be lost (``batch_lose_creates``)."""
        self.counts["creates"] += 1
        if self.counts["creates"] <= self.config.batch_lose_creates:
            self.counts["creates_lost"] += 1
            return True
        return False

    def enqueued_tokens(self, model: str, now: float) -> int:
        """The input tokens of ``model`` in batches that have not ended."""
        return sum(
            b.tokens
            for b in self.batches.values()
            if b.model == model and not b.failed and b.ends() > now
        )

    def submit(
        self,
        shape: str,
        requests: list[tuple[str, dict[str, Any]]],
        prefix: str,
        **details: Any,
    ) -> SimBatch:
        """Record a new batch of ``requests`` (``(custom_id, body)``), failing it at
        validation when it would pass the queue's token limit."""
        now = time.monotonic()
        model = str(requests[0][1].get("model", "")) if requests else ""
        tokens = sum(estimate_tokens({"messages": body.get("messages")}) for _, body in requests)
        batch = SimBatch(
            id=self.new_id(prefix),
            shape=shape,
            requests=requests,
            model=model,
            tokens=tokens,
            created=now,
            created_at=int(time.time()),
            turnaround_s=self.config.turnaround(self.rng),
            **details,
        )
        limit = self.config.batch_queue_tokens
        if limit is not None and self.enqueued_tokens(model, now) + tokens > limit:
            self.counts["failed_validation"] += 1
            batch.failed = [
                {
                    "code": "token_limit_exceeded",
                    "message": (
                        f"Enqueued token limit reached for {model} in organization sim. "
                        f"Limit: {limit:,} enqueued tokens. Please try again once some "
                        "in_progress batches have been completed."
                    ),
                    "param": None,
                    "line": None,
                }
            ]
        self.batches[batch.id] = batch
        return batch

    def cancel(self, batch: SimBatch) -> None:
        """Ask for the batch to stop: requests not yet finished are cancelled."""
        self.counts["cancels"] += 1
        if batch.cancelled is None and not self.ended(batch):
            batch.cancelled = time.monotonic()

    def ended(self, batch: SimBatch, now: float | None = None) -> bool:
        """Whether the batch has ended by ``now``; its answers are made and billed then."""
        if batch.answers is not None:
            return True
        now = time.monotonic() if now is None else now
        if now < batch.ends():
            return False
        self._finish(batch, now)
        return True

    def settle_all(self) -> None:
        """End every batch whose time has come (before the bill is read)."""
        now = time.monotonic()
        for batch in self.batches.values():
            self.ended(batch, now)

    def _finish(self, batch: SimBatch, now: float) -> None:
        done = batch.finished(now, self.config) if not batch.failed else 0
        answers = []
        for index, (custom_id, body) in enumerate(batch.requests):
            if batch.failed:
                break
            if index >= done:
                outcome = "canceled" if batch.cancelled is not None else "expired"
                answers.append(Answer(custom_id, outcome))
                continue
            answers.append(self._answer(custom_id, body))
        batch.answers = answers
        batch.ended_at = int(time.time())

    def _answer(self, custom_id: str, body: dict[str, Any]) -> Answer:
        """One request answered (and billed), or its error."""
        rate = self.config.batch_error_rate
        if rate and random.Random(digest("batch-error", custom_id)).random() < rate:
            return Answer(custom_id, "errored", error="simulated server error", status=500)
        try:
            text, prompt_tokens, completion_tokens = chat_reply(body, None)
        except ValueError as exc:
            return Answer(custom_id, "errored", error=f"invalid request: {exc}", status=400)
        counts = self.counts
        counts["billed_requests"] += 1
        counts["billed_prompt_tokens"] += prompt_tokens
        counts["billed_completion_tokens"] += completion_tokens
        body_digest = digest("billed", body)
        if body_digest in self.billed:
            counts["billed_again"] += 1
        self.billed.add(body_digest)
        return Answer(custom_id, "succeeded", text, prompt_tokens, completion_tokens)

    def stats(self) -> dict[str, Any]:
        """The counts, after ending every batch whose time has come."""
        self.settle_all()
        states: dict[str, int] = {}
        for batch in self.batches.values():
            state = "failed" if batch.failed else "ended" if batch.answers else "in_progress"
            states[state] = states.get(state, 0) + 1
        return {**self.counts, "batches": states}
