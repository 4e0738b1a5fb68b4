"""The batch tier at work in one run: an LLM step's requests gathered into provider
batches, each submitted exactly once and answered once, whatever kills the process.

An LLM step on the batch tier calls :meth:`BatchConnection.chat` where an online
step calls its connection: the request joins the next batch, and the call returns
when the batch has ended and its answer is read. What the step does with the
answer (structured output and its repair, packing, the cache in front) is the
online path's. The order of things, each recorded in the
:class:`~headrace.llm.tier.ledger.Ledger` *before* the next is sent:

1. **intend**: the requests file and the intent are written to the run's folder;
2. **upload** the file (named after the intent; on a resume, an upload that
   happened is found by its name first);
3. **create** the batch once (the session's lease renewed first), with the intent in
   its metadata and no retry, after looking whether the provider already holds it
   (a lost answer, a resume, a session that was frozen and taken over);
4. **poll** until it ends; **collect** its output and error files into the ledger,
   then hand each answer to the requests waiting for it.

A request is named ``custom_id`` = a hash of (step, request body, attempt): items
fed again ask for the same names, and find them in a batch submitted or collected;
identical requests are asked once. Per-request errors are retried in a later batch
(a new attempt, within the step's ``Retry``) or raised as the provider's error;
expired and cancelled requests go into the next batch without spending an attempt.
A batch refused for the queue's token limit (``token_limit_exceeded``) teaches the
step that limit (:mod:`.queue_limit`): its requests go back, and later batches fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import BudgetExhausted, PipelineError, ProviderError, RunStopped
from ...limits.retry import Retry, is_retryable
from ...metrics import StepMetrics
from ..replies import Reply
from ..stats import Costs, llm_stats
from ..tokens import prompt_tokens
from .answers import _Unfinished, count_answer, custom_id, outcome
from .anthropic_batches import AnthropicBatches
from .committed import Committed
from .intent_steps import BatchApi, IntentSteps
from .ledger import Intent, Ledger
from .openai_batches import OpenAIBatches
from .queue_limit import QueueLimit, fitting
from .settings import BatchTier

if TYPE_CHECKING:
    from ...limits.budget import RunSpend
    from ..connection import ClientSettings

__all__ = ["BatchConnection"]

_log = logging.getLogger("headrace.llm.batch")

UNFINISHED_LIMIT = 10
"""A request that expired or was cancelled in this many batches in a row fails (504)."""


class BatchConnection:
    """One LLM step's requests on the batch tier in one run (see the module's notes)."""

    def __init__(
        self,
        step: str,
        tier: BatchTier,
        client: ClientSettings,
        ledger: Ledger,
        retry: Retry,
        run: str,
        calls: int,
        model: str,
        spend: RunSpend | None = None,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.step = step
        self.tier = tier
        self.calls = calls  # the step's calls at once: when all of them wait, none can come
        self.ledger = ledger
        self.retry = retry
        self.shape: BatchApi = (
            AnthropicBatches(client) if client.batch_api == "anthropic" else OpenAIBatches(client)
        )
        self.steps = IntentSteps(step, self.shape, ledger, tier, run, fence)
        self.price_of = client.price
        self.costs = Costs(lambda model, _tier: client.price(model, "batch"))
        self.committed = Committed(spend, self.costs, model)
        self.intents: dict[str, Intent] = {}
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.waiting = 0  # requests awaiting an answer (futures in ``waiters``)
        self.pending: dict[str, dict[str, Any]] = {}  # custom_id -> body, for the next batch
        self.owner: dict[str, str] = {}  # custom_id -> the open intent holding it
        self.kept: dict[str, str] = {}  # custom_id -> the collected intent holding its answer
        rate = client.rate
        shared = rate.shared if rate is not None else None
        self.queue = QueueLimit(model, shared, rate.key if rate is not None else run)
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = False
        self.rescuing = False  # the auto tier moves the rest online: no batch from now
        self.elsewhere = 0  # input tokens other processes hold in the shared queue
        self._arrived: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._answers: tuple[str, dict[str, dict[str, Any]]] | None = None
        self._read_ledger()

    # -- what the step calls ------------------------------------------------------------

    async def chat(
        self, body: dict[str, Any], metrics: StepMetrics | None = None, *, stream: bool = False
    ) -> Reply:
        """The answer to one chat request, from a batch.

        Raises:
            ProviderError: the provider's error for the request (its retries spent), or
                its refusal of the whole batch.
            RunStopped: the tier cannot go on (the ledger cannot be written, the budget
                cannot commit another batch): the item is left for a resume.
            PipelineError: ``stream`` (a batch's answer is never streamed).
        """
        if stream:
            raise PipelineError("a batch-tier answer cannot be streamed")
        self._start()
        attempt = unfinished = 0
        while True:
            name = custom_id(self.step, body, attempt)
            row = await self._answer(name, body)
            answer = outcome(row)
            if answer is None:  # expired or cancelled: asked again, no attempt spent
                unfinished += 1
                if self.rescuing:  # the deadline is near: the auto tier sends it online
                    raise _Unfinished(name)
                if unfinished < UNFINISHED_LIMIT:
                    continue
                answer = ProviderError(
                    504, f"the provider left the request unfinished in {unfinished} batches", {}
                )
            if isinstance(answer, Reply):
                if metrics is not None and metrics.llm is not None:
                    stats, model = llm_stats(metrics), str(body.get("model"))
                    count_answer(self.costs, self.price_of(model), stats, model, answer)
                return answer
            if is_retryable(answer) and attempt + 1 < self.retry.attempts:
                attempt += 1
                continue
            raise answer

    def abandon_pending(self) -> None:
        """Make no more batches (the auto tier's rescue, its deadline near): a request
        not yet in one is handed back as unfinished (:class:`_Unfinished`)."""
        self.rescuing = True
        for name in list(self.pending):
            self._hand_out(name, {"custom_id": name, "error": {"code": "batch_cancelled"}})
        self.pending.clear()

    async def close(self) -> None:
        """Stop following the batches (they stay in the ledger for the next session)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.shape.close()
        await self.queue.close()

    # -- answers ------------------------------------------------------------------------

    async def _answer(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Request ``name``'s row: kept from a collected batch, or awaited from its batch."""
        kept = self.kept.get(name) if name not in self.owner else None
        if kept is not None:
            row = await asyncio.to_thread(self._kept_row, kept, name)
            if row is not None and outcome(row) is not None:
                return row
            self.kept.pop(name, None)  # expired or cancelled there: ask again
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(name, []).append(future)
        self.waiting += 1
        if name not in self.owner and name not in self.pending:
            self.pending[name] = body
            assert self._arrived is not None
            self._arrived.set()
        try:
            return await future
        finally:
            self.waiting -= 1
            waiting = self.waiters.get(name)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self.waiters[name]
                    self.pending.pop(name, None)

    def _kept_row(self, intent_id: str, name: str) -> dict[str, Any] | None:
        """Request ``name``'s row kept for ``intent_id`` (the last intent read stays in
        memory: a resume's items come in the order they were batched)."""
        answers = self._answers
        if answers is None or answers[0] != intent_id:
            answers = self._answers = (intent_id, dict(self.ledger.output_rows(intent_id)))
        return answers[1].get(name)

    def _hand_out(self, name: str, row: dict[str, Any]) -> None:
        for future in self.waiters.pop(name, ()):
            if not future.done():
                future.set_result(row)

    def _fail(self, names: list[str], error: BaseException) -> None:
        for name in names:
            self.owner.pop(name, None)
            for future in self.waiters.pop(name, ()):
                if not future.done():
                    future.set_exception(error)

    # -- the batches --------------------------------------------------------------------

    def _read_ledger(self) -> None:
        """Know every intent of this step the ledger holds (when the step is bound: a
        damaged ledger stops the run before it starts)."""
        for intent in self.ledger.intents():
            if intent.step != self.step:
                continue
            self.intents[intent.id] = intent
            for name in intent.requests:
                if intent.open:
                    self.owner[name] = intent.id
                elif intent.state == "collected":
                    self.kept[name] = intent.id

    def _start(self) -> None:
        """Follow every open intent, and start gathering (once, in the run's loop)."""
        if self.started:
            return
        self.started = True
        self._arrived, self._room = asyncio.Event(), asyncio.Event()
        for intent in list(self.intents.values()):
            if intent.open:
                self._spawn(self._follow(intent, resumed=True))
        self._spawn(self._gather())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A task of the tier ended: one that failed fails every waiting request, so
        that none waits forever for a batch nobody will make."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            stopped = RunStopped(f"the batch tier of step {self.step!r} stopped: {error}")
            self._fail(list(self.waiters), stopped)

    async def _gather(self) -> None:
        """Make a batch whenever one is full, or no request came for ``gather``."""
        arrived = self._arrived
        assert arrived is not None
        while True:
            if not self.pending:
                arrived.clear()
                await arrived.wait()
            while len(self.pending) < self.tier.max_requests and not self._all_waiting():
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), self.tier.gather_s)
                except TimeoutError:
                    break
            space = await self.queue.room(self._in_flight() + self.elsewhere)
            names = fitting(self.pending, self.tier.max_requests, space)
            intent_id = Intent.new_id()
            tokens = sum(prompt_tokens(self.pending[n]) for n in names)
            window = self.tier.window_s
            # no request fits: a look at the other processes' holds, which may end
            own = self._in_flight()
            held, self.elsewhere = await self.queue.hold(intent_id, tokens, own, window)
            if not names or not held:  # the queue is full: wait for a batch to end
                await self._wait_for_room()
                continue
            try:  # a batch that would pass the run's budget is not submitted
                count = await self.committed.take(intent_id, [(n, self.pending[n]) for n in names])
            except BudgetExhausted as exc:
                await self.queue.release(intent_id)
                self._fail(list(self.pending), exc)
                self.pending.clear()
                continue
            # a request whose item went away while the budget was asked is left out
            requests = [(n, self.pending.pop(n)) for n in names[:count] if n in self.pending]
            names = [name for name, _ in requests]
            if not names:
                await self.queue.release(intent_id)
                await self.committed.settle(intent_id, ())
                continue
            intent = Intent(
                id=intent_id,
                step=self.step,
                created=self.shape.now(),
                requests=names,
                tokens=sum(prompt_tokens(body) for _, body in requests),
            )
            if intent.tokens != tokens:  # fewer requests than held: hold what it is
                await self.queue.hold(intent.id, intent.tokens, 0, window, adopt=True)
            for name in names:
                self.owner[name] = intent.id
            self.intents[intent.id] = intent
            lines = (
                orjson.dumps(
                    {"custom_id": n, "method": "POST", "url": "/v1/chat/completions", "body": b}
                )
                + b"\n"
                for n, b in requests
            )
            content = b"".join(lines)
            await asyncio.to_thread(self.ledger.write_input, intent.id, content)
            await asyncio.to_thread(self.ledger.save, intent)
            self._spawn(self._follow(intent, resumed=False))

    def _all_waiting(self) -> bool:
        """Whether every call the step may make at once waits: the batch leaves now."""
        return self.waiting >= self.calls

    async def _wait_for_room(self) -> None:
        """Until one of this process's batches ends, or a poll's time (another process's
        batch may end meanwhile)."""
        assert self._room is not None
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), self.tier.poll_s)

    def _in_flight(self) -> int:
        """The input tokens of this process's unfinished batches."""
        return sum(i.tokens for i in self.intents.values() if i.open)

    async def _follow(self, intent: Intent, *, resumed: bool) -> None:
        """Take one intent to its end: submitted once, polled, collected (its hold on
        the shared queue given back then)."""
        try:
            if resumed:  # already counted against the provider's queue: held as it is
                await self.queue.hold(intent.id, intent.tokens, 0, self.tier.window_s, adopt=True)
            if intent.state == "intended":
                await self.steps.upload(intent, resumed)
            if intent.state == "uploaded":
                await self.steps.create(intent, resumed)
            if intent.state == "submitted":
                batch = await self.steps.poll(intent)
                await self._collect(intent, batch)
        except Exception as exc:  # its requests stop with it: never left waiting
            _log.error("headrace: batch %s of step %r: %s", intent.id, self.step, exc)
            stopped = RunStopped(f"the batch tier of step {self.step!r} stopped: {exc}")
            self._fail([n for n, i in self.owner.items() if i == intent.id], stopped)
        finally:
            await self.queue.release(intent.id)
            assert self._room is not None
            self._room.set()

    async def _collect(self, intent: Intent, batch: dict[str, Any]) -> None:
        refusal = self.shape.refusal(batch)
        if refusal is not None:
            await self._refused(intent, *refusal)
            return
        content = await self.steps.outlasting(self.shape.answers, batch)
        await asyncio.to_thread(self.ledger.write_output, intent.id, content)
        intent.state = "collected"
        await self.steps.save(intent)
        rows = {name: row for name, row in self.ledger.output_rows(intent.id)}
        for name, row in rows.items():
            self._hand_out(name, row)
        await self.committed.settle(intent.id, rows.values())
        for name in intent.requests:
            if self.owner.get(name) == intent.id:
                del self.owner[name]
            self.kept[name] = intent.id
            if name not in rows:  # no line for it: as if it had expired
                self._hand_out(name, {"custom_id": name, "error": {"code": "batch_expired"}})

    async def _refused(self, intent: Intent, code: str, message: str) -> None:
        intent.state = "refused"
        intent.error = f"{code}: {message}"[:1000]
        await self.steps.save(intent)
        await self.committed.settle(intent.id, ())
        names = intent.requests
        if code != "token_limit_exceeded":
            self._fail(names, ProviderError(400, f"the batch was refused: {intent.error}", {}))
            return
        limit = await self.queue.refused(intent, self.intents.values())
        _log.warning(
            "headrace: step %r: the provider's batch queue is full; batches now hold at most "
            "%d input tokens beside those in flight",
            self.step,
            limit,
        )
        for row in await asyncio.to_thread(self.ledger.input_rows, intent.id):
            name = row["custom_id"]
            self.owner.pop(name, None)
            if name in self.waiters:
                self.pending[name] = row["body"]
        assert self._arrived is not None
        self._arrived.set()
