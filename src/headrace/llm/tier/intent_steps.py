"""One batch intent taken through the provider's protocol: uploaded, created exactly
once, polled to its end (see :mod:`headrace.llm.tier.submitter` for the whole)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import AnswerLost, MalformedResponse, ProviderError
from ...limits.retry import is_retryable
from .anthropic_batches import AnthropicBatches
from .ledger import Intent, Ledger
from .openai_batches import OpenAIBatches
from .settings import BatchTier

__all__ = ["IntentSteps"]

_log = logging.getLogger("headrace.llm.batch")

BatchApi = OpenAIBatches | AnthropicBatches
"""A provider's batch API: the shapes the batch tier speaks."""

_OUTAGE_WAIT_S = (0.5, 30.0)  # the first and the longest wait while the provider is away


class IntentSteps:
    """The provider's side of one step's intents: each state recorded in the ledger
    before the next request is sent."""

    def __init__(
        self,
        step: str,
        shape: BatchApi,
        ledger: Ledger,
        tier: BatchTier,
        run: str,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.fence = fence  # the session's lease renewed, or LeaseLost: before each create
        self.step = step
        self.shape = shape
        self.ledger = ledger
        self.tier = tier
        self.run = run

    async def save(self, intent: Intent) -> None:
        """Record ``intent`` as it is now (in a thread: the ledger fsyncs)."""
        await asyncio.to_thread(self.ledger.save, intent)

    async def upload(self, intent: Intent, resumed: bool) -> None:
        """Upload the intent's requests (after a kill, the upload found by name first);
        a provider that takes requests inline has nothing to upload."""
        shape = self.shape
        if not isinstance(shape, OpenAIBatches):  # requests go inline with the create
            intent.file_id = "inline"
            intent.state = "uploaded"
            await self.save(intent)
            return
        content = await asyncio.to_thread(self.ledger.read_input, intent.id)
        look = resumed
        while True:
            found = await self.outlasting(shape.find_upload, intent.id) if look else None
            try:
                intent.file_id = found or await shape.upload(intent.id, content)
                break
            except AnswerLost as exc:  # uploaded or not: look for it by its name first
                _log.warning("headrace: uploading batch %s: %s", intent.id, exc)
                look = True
                await asyncio.sleep(_OUTAGE_WAIT_S[0])
        intent.state = "uploaded"
        await self.save(intent)

    async def create(self, intent: Intent, resumed: bool) -> None:
        """Create the intent's batch: never a second time without looking first."""
        assert intent.file_id is not None
        content = await asyncio.to_thread(self.ledger.read_input, intent.id)
        wait = _OUTAGE_WAIT_S[0]
        while True:
            # look first where a create may have been sent; where batches carry the intent,
            # always: a session frozen before its create, whose run another took over and
            # created the batch for, then finds it instead of making a second
            if resumed or intent.creates or self.shape.tagged:
                others = await asyncio.to_thread(self.ledger.intents)
                known = {i.batch_id for i in others if i.batch_id and i.id != intent.id}
                found = await self.outlasting(self.shape.find, intent, known)
                if found is not None and isinstance(found.get("id"), str):
                    await self.submitted(intent, found)
                    return
            if self.fence is not None:
                await self.fence()  # still this session's run, renewed: or LeaseLost
            intent.creates += 1
            await self.save(intent)  # counted before it is sent
            try:
                batch = await self.shape.create(
                    intent, content, self.run, self.tier.completion_window
                )
            except AnswerLost as exc:
                _log.warning("headrace: creating batch %s, the answer was lost: %s", intent.id, exc)
                continue
            except ProviderError as exc:
                if not is_retryable(exc):
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, _OUTAGE_WAIT_S[1])
                continue
            if not isinstance(batch.get("id"), str):
                raise MalformedResponse("the create's answer names no batch")
            await self.submitted(intent, batch)
            return

    async def submitted(self, intent: Intent, batch: dict[str, Any]) -> None:
        """Record that ``batch`` is the intent's."""
        intent.batch_id = str(batch["id"])
        intent.status = self.shape.progress(batch)[0]
        intent.state = "submitted"
        await self.save(intent)

    async def poll(self, intent: Intent) -> dict[str, Any]:
        """Look at the intent's batch until it has ended (sooner at first); the batch."""
        assert intent.batch_id is not None
        wait = min(1.0, self.tier.poll_s)
        while True:
            batch: dict[str, Any] = await self.outlasting(self.shape.retrieve, intent.batch_id)
            status, counts = self.shape.progress(batch)
            if status != intent.status or counts != intent.counts:
                intent.status, intent.counts = status, counts
                await self.save(intent)
            if self.shape.ended(batch):
                return batch
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.tier.poll_s)

    async def outlasting(self, call: Any, *args: Any) -> Any:
        """``call(*args)``, waited out while the provider is away (connection errors,
        timeouts, 429s and 5xx), with a growing pause."""
        wait = _OUTAGE_WAIT_S[0]
        while True:
            try:
                return await call(*args)
            except AnswerLost as exc:
                problem: Exception = exc
            except ProviderError as exc:
                if not is_retryable(exc):
                    raise
                problem = exc
            _log.warning("headrace: batch tier of step %r: %s; trying again", self.step, problem)
            await asyncio.sleep(wait)
            wait = min(wait * 2, _OUTAGE_WAIT_S[1])
