"""A client's open connection pool in one run, and the gate its requests pass.

Every request goes through the connection's :class:`~headrace.limits.gate.Gate`
(the one a function step's calls pass), in this order: :class:`Spending` (the
run's budget), the client's circuit, its rate limit, then the request and
:class:`Requests` (each request's time and 429s); failures are retried by the
client's (or the step's) :class:`~headrace.limits.retry.Retry`.
"""

from __future__ import annotations

import copy
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..engine.tasks import run_together
from ..errors import CapacityRefused, MalformedResponse, ProviderError, Throttled
from ..limits.call import Call, Policy
from ..limits.circuit import CircuitState
from ..limits.gate import Gate
from ..limits.rate_state import RateState
from ..limits.retry import Retrier, Retry, is_throttle
from ..metrics import StepMetrics
from .replies import Reply, message_content, read_stream
from .secrets import redact
from .stats import Costs, LLMStats, llm_stats
from .tokens import prompt_tokens

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import aiohttp

    from ..limits.budget import RunSpend
    from ..limits.circuit import Circuit
    from ..limits.rate import Rate
    from .prices import Price
    from .secrets import Secret

__all__ = ["ClientSettings", "Connection", "Requests", "Spending"]


class ClientSettings(Protocol):
    """What a connection reads of its :class:`~headrace.llm.client.Client` (which opens
    connections: so this module names only what it needs of it)."""

    base_url: str
    headers: dict[str, str]
    connections: int
    timeout: float
    max_embedding_inputs: int
    rate: Rate | None
    retry: Retry | None
    circuit: Circuit | None
    batch_api: str

    def price(self, model: str, tier: str = "online") -> Price | None:
        """The price of ``model`` on ``tier``, if known."""

    def api_key(self) -> Secret | None:
        """The key sent to this endpoint, if any."""


class Connection:
    """A client's open connection pool, and the gate its requests pass in one run."""

    def __init__(
        self,
        client: ClientSettings,
        spend: RunSpend | None = None,
        circuit: CircuitState | None = None,
        rate: RateState | None = None,
    ) -> None:
        import aiohttp

        self.client = client
        self.spend = spend
        # the run's states of the client's circuit and rate limit (shared with the run's
        # other users of them), or fresh ones for a connection opened outside a run
        if circuit is None and client.circuit is not None:
            circuit = client.circuit.new_state()
        self.circuit = circuit
        self._own_rate = rate is None and client.rate is not None
        if rate is None and client.rate is not None:
            rate = RateState(client.rate)
        self.rate = rate
        self.secret = client.api_key()
        headers = {"Content-Type": "application/json", **client.headers}
        if self.secret is not None:
            headers["Authorization"] = f"Bearer {self.secret.reveal()}"
        self._headers = headers
        self._session: aiohttp.ClientSession = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=client.connections, limit_per_host=client.connections, keepalive_timeout=30
            ),
            timeout=aiohttp.ClientTimeout(total=client.timeout),
        )
        self._costs = Costs(client.price)
        self._gate = self._gate_with(client.retry)

    def _gate_with(self, retry: Retry | None) -> Gate:
        policies: list[Policy] = [Spending(self._costs, self.spend)]
        if self.circuit is not None:
            policies.append(self.circuit)
        if self.rate is not None:
            policies.append(self.rate)
        policies.append(Requests())
        return Gate(
            self.client.base_url,
            policies,
            retrier=Retrier(retry) if retry is not None else None,
            circuit=self.circuit,
            metrics=StepMetrics(name="client", kind="llm"),
        )

    def retrying(self, retry: Retry) -> Connection:
        """This pool, with its rate limit and circuit, but retrying by ``retry`` (a step's own)."""
        view = copy.copy(self)
        view._gate = self._gate_with(retry)
        return view

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool (and the Redis connection of a shared rate limit it opened)."""
        await self._session.close()
        if self._own_rate and self.rate is not None:
            await self.rate.close()

    # -- the requests -----------------------------------------------------------------

    async def chat(
        self,
        body: dict[str, Any],
        metrics: StepMetrics | None = None,
        *,
        stream: bool = False,
        timeout: float | None = None,
    ) -> Reply:
        """Send a chat completion request (``body`` as the OpenAI API takes it).

        With ``stream`` the answer is read as server-sent events and put together;
        the reply then carries the time to the first token. ``timeout`` replaces the
        client's for this request (the flex tier's longer one).
        """
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        return await self.send("/chat/completions", body, metrics, stream=stream, timeout=timeout)

    async def embed(
        self,
        texts: list[str],
        model: str,
        metrics: StepMetrics | None = None,
        *,
        dimensions: int | None = None,
    ) -> list[list[float]]:
        """Embed ``texts`` in order, in requests of at most ``max_embedding_inputs`` each."""
        size = self.client.max_embedding_inputs
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]

        async def one(chunk: list[str]) -> list[list[float]]:
            body: dict[str, Any] = {"model": model, "input": chunk}
            if dimensions is not None:
                body["dimensions"] = dimensions
            reply = await self.send("/embeddings", body, metrics)
            try:
                data = sorted(reply.body["data"], key=lambda d: d["index"])
                vectors = [list(map(float, d["embedding"])) for d in data]
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedResponse(f"an embeddings answer without vectors: {exc}") from None
            if len(vectors) != len(chunk):
                raise MalformedResponse(
                    f"an embeddings answer with {len(vectors)} vectors for {len(chunk)} inputs"
                )
            return vectors

        parts = await run_together([partial(one, chunk) for chunk in chunks])
        return [vector for part in parts for vector in part]

    async def send(
        self,
        path: str,
        body: dict[str, Any],
        metrics: StepMetrics | None = None,
        *,
        stream: bool = False,
        timeout: float | None = None,
    ) -> Reply:
        """POST ``body`` to ``path`` through the client's gate: the budget, the circuit,
        the rate limit, then the request, retried (see :mod:`headrace.limits.gate`).
        ``timeout`` replaces the client's for this request.

        Raises:
            BudgetExhausted: the run's budget is spent (nothing was sent).
            Throttled: a 429, its retries spent.
            ProviderError: another error status, not retried or its retries spent.
            MalformedResponse: an unreadable answer, its retries spent.
            CapacityRefused: a flex request the provider had no capacity for (not retried).
            CircuitOpen: the circuit is open and fails calls (``when_open="fail"``).
            ProviderDown: the circuit stayed open past its ``max_outage``.
        """
        if metrics is None:
            metrics = StepMetrics(name="client", kind="llm")
        model = str(body.get("model", ""))
        if metrics.llm is None:
            metrics.llm = LLMStats(model=model, priced=self.client.price(model) is not None)
        counted = None
        if self.rate is not None or self.spend is not None:
            counted = prompt_tokens(body)
        client = self.client

        async def request(call: Call) -> Reply:
            try:
                reply = await self._post(path, body, stream, timeout)
            except TimeoutError:  # aiohttp's carries no words: say what timed out
                waited = client.timeout if timeout is None else timeout
                raise TimeoutError(
                    f"{client.base_url}{path}: no answer within {waited:g} s"
                ) from None
            call.usage = reply.body
            call.headers = reply.headers
            return reply

        reply: Reply = await self._gate.call(request, body, prompt_tokens=counted, metrics=metrics)
        return reply

    async def _post(
        self, path: str, body: dict[str, Any], stream: bool, timeout: float | None = None
    ) -> Reply:
        started = time.perf_counter()
        # aiohttp reads timeout=None as "no timeout": the pool's own stands for "not given"
        limit = self._session.timeout if timeout is None else _total(timeout)
        async with self._session.post(
            self.client.base_url + path,
            data=orjson.dumps(body),
            headers=self._headers,
            timeout=limit,
        ) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            if response.status != 200:
                raise self._error(response.status, await response.read(), headers)
            if stream:
                return await read_stream(response, headers, started)
            raw = await response.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"the answer is not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise MalformedResponse("the answer is not a JSON object")
        content = message_content(parsed) if path == "/chat/completions" else ""
        return Reply(content, parsed, headers)

    def _error(self, status: int, raw: bytes, headers: dict[str, str]) -> Exception:
        code = ""
        try:
            error = orjson.loads(raw)["error"]
            detail = error["message"]
            code = str(error.get("code") or error.get("type") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            detail = raw.decode("utf-8", "replace")
        message = redact(str(detail)[:500], self.secret)
        if _capacity_refusal(status, code, message):
            return CapacityRefused(status, message)
        if status == 429:
            return Throttled(f"HTTP 429: {message}", headers=headers)
        return ProviderError(status, message, headers)


class Spending:
    """A client's spending as a policy of its gate: reserve a request's expected cost
    before it (refusing it when the run's budget is spent), and count the tokens and
    cost of its answer after it."""

    __slots__ = ("costs", "spend")

    def __init__(self, costs: Costs, spend: RunSpend | None) -> None:
        self.costs = costs
        self.spend = spend

    def enter(self, call: Call) -> Awaitable[None] | None:
        """Reserve the request's expected cost from the budget, if the run has one
        (awaited when the budget is kept in Redis)."""
        if self.spend is None:
            return None
        model = str(call.value.get("model", ""))
        expected = self.costs.expected(model, call.prompt_tokens or 0, call.value)
        reserving = self.spend.reserve(*expected)
        call.reserved = expected
        return reserving

    def leave(self, call: Call, error: BaseException | None) -> Awaitable[None] | None:
        """Count the answer's tokens and cost; settle the reservation with them."""
        reply = call.output if error is None else None
        model = str(call.value.get("model", ""))
        metrics = call.metrics
        used = (0, 0.0)
        if reply is not None and metrics is not None:
            asked = "flex" if call.value.get("service_tier") == "flex" else "online"
            stats = llm_stats(metrics) if metrics.llm else None
            used = self.costs.count(stats, model, reply, asked)
        if self.spend is None:
            return None
        return self.spend.settle(*call.reserved, *used)


def _total(seconds: float) -> aiohttp.ClientTimeout:
    """A request's own time limit (the flex tier's), as aiohttp takes it."""
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


def _capacity_refusal(status: int, code: str, message: str) -> bool:
    """Whether an error answer is a flex request refused for capacity: Groq's 498, or a
    429 saying "resource unavailable" (OpenAI's) rather than "rate limit"."""
    if status == 498:
        return True
    if status != 429:
        return False
    said = f"{code} {message}".lower().replace("_", " ")
    return "resource unavailable" in said or "capacity exceeded" in said


class Requests:
    """The innermost policy of a client's gate: each request's time (from sending it to
    its answer) into the step's latency, and its 429s."""

    __slots__ = ()

    def enter(self, call: Call) -> None:
        """Nothing to wait for."""

    def leave(self, call: Call, error: BaseException | None) -> None:
        """Time the answered request, or count the 429."""
        metrics = call.metrics
        if metrics is None:
            return
        if error is None:
            metrics.record_request(time.perf_counter() - call.admitted)
        elif isinstance(error, Exception) and is_throttle(error):
            metrics.throttled += 1
