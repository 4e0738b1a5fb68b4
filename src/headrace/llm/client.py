"""An async client for any OpenAI-compatible endpoint: chat, streaming, embeddings.

Built on aiohttp: one pooled connection set (HTTP/1.1 keep-alive) per client in
a run, ``connections`` wide. (httpx 0.28 spends ~13 ms of CPU per request at 64
pooled connections here; aiohttp ~0.3 ms, see ``bench/llm_latency.py``.)

Every request the client sends goes through its :class:`~headrace.limits.gate.Gate`
(the one a function step's calls pass), in this order: the run's
:class:`~headrace.limits.budget.Budget` (reserve the expected cost, or stop), the
:class:`~headrace.limits.circuit.Circuit`, the :class:`~headrace.limits.rate.Rate`
(one request and the prompt's counted tokens plus the expected completion),
then the HTTP call; a retryable failure (429, 5xx, timeouts, broken or
malformed answers) is retried by the :class:`~headrace.limits.retry.Retry`.
Each request's time, from sending it to its answer, is the step's latency.
Repair turns and items a packed request sent back are requests like any other,
so they are paced, retried and paid for the same way.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from ..errors import MalformedResponse, PipelineError, ProviderError
from ..limits.circuit import Circuit
from ..limits.rate import Rate
from ..limits.retry import Retry
from ..services.secrecy import scrub_url
from ..values.checks import positive_int
from .connection import Connection
from .price_table import table_price, table_version
from .prices import PRICES, Price
from .replies import Reply
from .secrets import Secret, load_secret, origin, shown_origin
from .tier.flex import FLEX_APIS, FlexApi, flex_api_of
from .tier.settings import BATCH_PRICE_SHARE

if TYPE_CHECKING:
    from ..engine.context import RunContext
    from ..limits.budget import RunSpend

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
        prices: model name to :class:`~headrace.llm.prices.Price`: the user's, looked up
            first; then the maintained table (``genai-prices``, see
            :mod:`headrace.llm.price_table`), then the built-in one.
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
        batch_api: the batch API the batch tier (``tier="batch"``) speaks here:
            ``"openai"`` (``/files`` and ``/batches``, which OpenAI-compatible
            providers copy) or ``"anthropic"`` (``/messages/batches``). Default:
            ``"anthropic"`` at ``api.anthropic.com``, else ``"openai"``.
        flex_api: whose flex tier (``tier="flex"``) this endpoint has: ``"openai"``,
            ``"azure"``, ``"gemini"`` or ``"groq"`` (their prices and refusals differ,
            see :mod:`headrace.llm.tier.flex`). Default: guessed from the host
            (OpenAI's for a host it does not know; none at ``api.anthropic.com``).

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
        batch_api: Literal["openai", "anthropic"] | None = None,
        flex_api: Literal["openai", "azure", "gemini", "groq"] | None = None,
    ) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        target = _checked_origin(url)
        self.base_url = url.rstrip("/")
        self.identity = identity or self.base_url
        loopback = _is_loopback(url)
        try:
            bound = None if key_hosts is None else {origin(h) for h in key_hosts}
        except ValueError as exc:
            raise PipelineError(f"Client key_hosts: {exc}") from None
        self.sends_key = bound is None or target in bound
        shown = shown_origin(target)
        if not self.sends_key and not loopback:
            listed = ", ".join(sorted(shown_origin(b) for b in bound or ())) or "no host"
            raise PipelineError(
                f"the key {api_key_env} is bound to {listed}, so it is not sent to {shown}: "
                f"bind it with {api_key_env}_HOSTS={shown} in the environment or the secrets "
                "file if that endpoint should have it"
            )
        if self.sends_key and target.startswith("http://") and not loopback:
            # a key crosses plain http only to this machine, or where the user bound that
            # very http origin; in Python, base_url alone is not enough for it
            explicit = bound is not None and target in bound
            if not explicit and load_secret(api_key_env, secrets_file) is not None:
                raise PipelineError(
                    f"{self.base_url} is plain http: the key {api_key_env} would cross the "
                    f"network in clear. Use https, or, on a network you trust, bind that origin "
                    f"with {api_key_env}_HOSTS={shown} (key_hosts= in Python)"
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
        self.prices = dict(prices or {})  # the user's; the tables answer for the rest
        self.headers = dict(headers or {})
        if batch_api not in (None, "openai", "anthropic"):
            raise PipelineError(
                f"Client batch_api must be 'openai' or 'anthropic', got {batch_api!r}"
            )
        anthropic = urlsplit(self.base_url).hostname == "api.anthropic.com"
        self.batch_api: str = batch_api or ("anthropic" if anthropic else "openai")
        self.flex_api: FlexApi | None = flex_api_of(self.base_url, flex_api)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, models={self.models!r})"

    def model_name(self, model: str) -> str:
        """The provider's name for ``model`` (an alias of :attr:`models`, or a name)."""
        return self.models.get(model, model)

    def price(self, model: str, tier: str = "online") -> Price | None:
        """The price of ``model`` (a name or alias) on ``tier``, if it has one.

        The standard price is the user's, the maintained table's or the built-in one's.
        Flex and batch prices are the maintained table's variants for the model (flex:
        as the client's :attr:`flex_api` says), else that share of the standard price
        (batch: :data:`~headrace.llm.tier.settings.BATCH_PRICE_SHARE`; flex: the
        provider's ``price_share``); the user's own prices are standard prices.

        Raises:
            PipelineError: ``tier`` is not ``"online"``, ``"flex"`` or ``"batch"``.
        """
        if tier not in ("online", "flex", "batch"):
            raise PipelineError(f"a price is for tier 'online', 'flex' or 'batch', not {tier!r}")
        name = self.model_name(model)
        found = self.prices.get(name)
        if found is None:
            found = table_price(name, self.base_url) or PRICES.get(name)
        if tier == "online" or found is None:
            return found
        variants: tuple[tuple[str, str], ...] = (("processing", "batch"),)
        share = BATCH_PRICE_SHARE
        if tier == "flex":
            flex = self.flex_api or FLEX_APIS["openai"]
            variants, share = flex.variants, flex.price_share
        if name not in self.prices:
            for variant in variants:
                priced = table_price(name, self.base_url, variant)
                if priced is not None and priced != found:
                    return priced
        return Price(found.input * share, found.output * share)

    def price_source(self, model: str) -> str:
        """Where :meth:`price` finds ``model``'s price, in a few words."""
        name = self.model_name(model)
        if name in self.prices:
            return "your prices"
        if table_price(name, self.base_url) is not None:
            return table_version() or "genai-prices"
        return "built-in prices" if name in PRICES else "unpriced"

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

    def connect(self, spend: RunSpend | None = None) -> Connection:
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


def _checked_origin(url: str) -> str:
    """The origin of a base URL, refusing what no request should go to.

    Raises:
        PipelineError: not http(s), a port that is not a number, or a user name or
            password inside it (they would be stored with the run and shown).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PipelineError(f"Client base_url must be an http(s) URL, got {scrub_url(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise PipelineError(
            f"Client base_url holds a user name or password ({scrub_url(url)}): it would be "
            "stored with the run and sent with every request; put the key in the variable "
            "api_key_env names (OPENAI_API_KEY by default) or the secrets file instead"
        )
    try:
        return origin(url)
    except ValueError as exc:
        raise PipelineError(f"Client base_url: {exc}") from None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
