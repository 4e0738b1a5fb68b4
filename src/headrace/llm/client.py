"""An async client for any OpenAI-compatible endpoint: chat, streaming, embeddings.

Built on aiohttp: one pooled connection set (HTTP/1.1 keep-alive) per client in
a run, ``connections`` wide. (httpx 0.28 spends ~13 ms of CPU per request at 64
pooled connections here; aiohttp ~0.3 ms, see ``bench/llm_latency.py``.)

Every request the client sends goes through its :class:`~headrace.limits.gate.Gate`
(the one a function step's calls pass), in this order: the run's
:class:`~headrace.budget.Budget` (reserve the expected cost, or stop), the
:class:`~headrace.limits.circuit.Circuit`, the :class:`~headrace.limits.rate.Rate`
(one request and the prompt's counted tokens plus the expected completion),
then the HTTP call; a retryable failure (429, 5xx, timeouts, broken or
malformed answers) is retried by the :class:`~headrace.limits.retry.Retry`.
Each request's time, from sending it to its answer, is the step's latency.
Repair turns and items a packed request sent back are requests like any other,
so they are paced, retried and paid for the same way.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import time
from collections.abc import Collection, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..engine.tasks import run_together
from ..errors import MalformedResponse, PipelineError, ProviderError, Throttled, positive_int
from ..limits.circuit import Circuit, CircuitState
from ..limits.gate import Call, Gate, Policy
from ..limits.rate import Rate, RateState
from ..limits.retry import Retrier, Retry, is_throttle
from ..metrics import StepMetrics
from .prices import PRICES, Price
from .replies import Reply, message_content, read_stream
from .secrets import Secret, load_secret, redact
from .stats import Costs, LLMStats
from .tokens import prompt_tokens

if TYPE_CHECKING:
    import aiohttp

    from ..budget import Spend
    from ..engine.runtime import RunContext

__all__ = ["Client", "Connection", "MalformedResponse", "ProviderError", "Reply"]

DEFAULT_RETRY = Retry(attempts=4)


class Client:
    """Settings for one OpenAI-compatible endpoint, shared by the LLM steps that use it.

    Args:
        base_url: the API root, e.g. ``"https://api.openai.com/v1"`` or a
            ``headrace sim`` URL. Default: ``$OPENAI_BASE_URL``, else OpenAI's.
        api_key_env: the environment variable holding the API key.
        secrets_file: a ``.env``-style file to read the key from when the
            environment has none (default ``$HEADRACE_SECRETS_FILE``). A key is
            never taken as an argument, so it cannot end up in code or recipes.
            A loopback ``base_url`` (a local server, the simulator) needs no key.
        models: aliases for model names, e.g. ``{"fast": "gpt-4o-mini"}``.
        rate: the provider's rate limit, shared by every request of this client.
        retry: how failed requests are retried (default ``hr.Retry(attempts=4)``;
            ``hr.Retry(attempts=1)`` for none).
        circuit: how an outage is handled (:class:`~headrace.limits.circuit.Circuit`).
            On by default (``True``: ``hr.Circuit()``, 5 failures in a row open it;
            calls then wait, probing every 30 s, and the run stops, resumable, after
            5 minutes of outage); ``False`` turns it off.
        timeout: the most one request may take, in seconds.
        connections: the size of the connection pool.
        max_embedding_inputs: the most inputs one embeddings request may carry
            (OpenAI's is 2,048); longer lists are split.
        prices: model name to :class:`~headrace.llm.prices.Price`, over the built-in table.
        headers: extra HTTP headers sent with every request.
        key_hosts: the hosts the key may be sent to. ``None`` (the default in
            Python, where you name ``base_url`` yourself): ``base_url``'s. Recipes
            pass the hosts the user bound the key to (:func:`~headrace.llm.secrets.
            bound_hosts`): a ``base_url`` outside them is refused, and a loopback
            one outside them gets no key.
        identity: what names this endpoint's answers in the fingerprints of the
            steps that use it (their cache keys, and a resume's check that the
            pipeline is the same). Default: ``base_url``, so a step rehearsed
            against ``headrace sim`` never answers from the cache, or resumes,
            against a real provider. Give one name to endpoints that answer alike
            (replicas of one server behind different URLs).

    Raises:
        PipelineError: an invalid option.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        secrets_file: str | os.PathLike[str] | None = None,
        models: Mapping[str, str] | None = None,
        rate: Rate | None = None,
        retry: Retry | None = DEFAULT_RETRY,
        circuit: Circuit | bool | None = True,
        timeout: float = 60.0,
        connections: int = 64,
        max_embedding_inputs: int = 2048,
        prices: Mapping[str, Price] | None = None,
        headers: Mapping[str, str] | None = None,
        key_hosts: Collection[str] | None = None,
        identity: str | None = None,
    ) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if urlsplit(url).scheme not in ("http", "https"):
            raise PipelineError(f"Client base_url must be an http(s) URL, got {url!r}")
        self.base_url = url.rstrip("/")
        self.identity = identity or self.base_url
        host = (urlsplit(url).hostname or "").lower()
        self.sends_key = key_hosts is None or host in {h.lower() for h in key_hosts}
        if not self.sends_key and not _is_loopback(url):
            bound = ", ".join(sorted(key_hosts or ())) or "no host"
            raise PipelineError(
                f"the key {api_key_env} is bound to {bound}, so it is not sent to {host}: "
                f"bind it with {api_key_env}_HOSTS={host} in the environment or the secrets "
                "file if that endpoint should have it"
            )
        self.api_key_env = api_key_env
        self.secrets_file = secrets_file
        self.models = dict(models or {})
        if circuit is True:
            circuit = Circuit()
        elif circuit is False:
            circuit = None
        for option, value, kind in (
            ("rate", rate, Rate),
            ("retry", retry, Retry),
            ("circuit", circuit, Circuit),
        ):
            if value is not None and not isinstance(value, kind):
                raise PipelineError(f"Client {option} must be hr.{kind.__name__}, got {value!r}")
        self.rate = rate
        self.retry = retry
        self.circuit: Circuit | None = circuit
        if not timeout > 0:
            raise PipelineError(f"Client timeout must be positive, got {timeout!r}")
        self.timeout = float(timeout)
        for option, number in (
            ("connections", connections),
            ("max_embedding_inputs", max_embedding_inputs),
        ):
            positive_int(number, f"Client {option}")
        self.connections = connections
        self.max_embedding_inputs = max_embedding_inputs
        self.prices = {**PRICES, **dict(prices or {})}
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, models={self.models!r})"

    def model_name(self, model: str) -> str:
        """The provider's name for ``model`` (an alias of :attr:`models`, or a name)."""
        return self.models.get(model, model)

    def price(self, model: str) -> Price | None:
        """The price of ``model`` (a name or alias), if the table has one."""
        return self.prices.get(self.model_name(model))

    def api_key(self) -> Secret | None:
        """The API key, from the environment or the secrets file.

        Raises:
            PipelineError: there is none, and the endpoint is not on this machine.
        """
        if not self.sends_key:  # a loopback endpoint the key is not bound to
            return None
        secret = load_secret(self.api_key_env, self.secrets_file)
        if secret is None and not _is_loopback(self.base_url):
            raise PipelineError(
                f"no API key for {self.base_url}: set the environment variable "
                f"{self.api_key_env}, or put {self.api_key_env}=... in the secrets file "
                "(secrets_file=, or $HEADRACE_SECRETS_FILE)"
            )
        return secret

    def connect(self, spend: Spend | None = None) -> Connection:
        """Open a connection pool (call it inside a running event loop); close it with
        ``await conn.close()`` or use ``async with client.connect() as conn``."""
        return Connection(self, spend)

    def connection_in(self, ctx: RunContext) -> Connection:
        """This client's one connection pool in the run ``ctx``, closed when the run ends."""

        def make() -> Connection:
            circuit = ctx.circuit(self.circuit) if self.circuit is not None else None
            rate = ctx.rate(self.rate) if self.rate is not None else None
            connection = Connection(self, ctx.spend, circuit, rate)
            ctx.on_close_async(connection.close)
            return connection

        connection: Connection = ctx.shared(("headrace.llm.Client", id(self)), make)
        return connection


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Connection:
    """A client's open connection pool, and the gate its requests pass in one run."""

    def __init__(
        self,
        client: Client,
        spend: Spend | None = None,
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
            rate = client.rate.new_state()
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
        self, body: dict[str, Any], metrics: StepMetrics | None = None, *, stream: bool = False
    ) -> Reply:
        """Send a chat completion request (``body`` as the OpenAI API takes it).

        With ``stream`` the answer is read as server-sent events and put together;
        the reply then carries the time to the first token.
        """
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        return await self.send("/chat/completions", body, metrics, stream=stream)

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
    ) -> Reply:
        """POST ``body`` to ``path`` through the client's gate: the budget, the circuit,
        the rate limit, then the request, retried (see :mod:`headrace.limits.gate`).

        Raises:
            BudgetExhausted: the run's budget is spent (nothing was sent).
            Throttled: a 429, its retries spent.
            ProviderError: another error status, not retried or its retries spent.
            MalformedResponse: an unreadable answer, its retries spent.
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
                reply = await self._post(path, body, stream)
            except TimeoutError:  # aiohttp's carries no words: say what timed out
                raise TimeoutError(
                    f"{client.base_url}{path}: no answer within {client.timeout:g} s"
                ) from None
            call.usage = reply.body
            call.headers = reply.headers
            return reply

        reply: Reply = await self._gate.call(request, body, prompt_tokens=counted, metrics=metrics)
        return reply

    async def _post(self, path: str, body: dict[str, Any], stream: bool) -> Reply:
        started = time.perf_counter()
        async with self._session.post(
            self.client.base_url + path, data=orjson.dumps(body), headers=self._headers
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
        try:
            detail = orjson.loads(raw)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            detail = raw.decode("utf-8", "replace")
        message = redact(str(detail)[:500], self.secret)
        if status == 429:
            return Throttled(f"HTTP 429: {message}", headers=headers)
        return ProviderError(status, message, headers)


class Spending:
    """A client's spending as a policy of its gate: reserve a request's expected cost
    before it (refusing it when the run's budget is spent), and count the tokens and
    cost of its answer after it."""

    __slots__ = ("costs", "spend")

    def __init__(self, costs: Costs, spend: Spend | None) -> None:
        self.costs = costs
        self.spend = spend

    def enter(self, call: Call) -> None:
        """Reserve the request's expected cost from the budget, if the run has one."""
        if self.spend is not None:
            model = str(call.value.get("model", ""))
            call.reserved = self.costs.reserve(
                self.spend, model, call.prompt_tokens or 0, call.value
            )

    def leave(self, call: Call, error: BaseException | None) -> None:
        """Count the answer's tokens and cost; settle the reservation with them."""
        reply = call.output if error is None else None
        model = str(call.value.get("model", ""))
        metrics = call.metrics
        used = (0, 0.0)
        if reply is not None and metrics is not None:
            used = self.costs.count(metrics.llm, model, reply)
        if self.spend is not None:
            self.spend.settle(*call.reserved, *used)


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
