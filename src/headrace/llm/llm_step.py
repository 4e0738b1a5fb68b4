"""What every LLM step shares: a client, a model, and the step options (see
:mod:`headrace.llm.steps`)."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

from .._types import Handler
from ..cache import Cache
from ..engine.call import bind_function_step
from ..engine.context import binds
from ..errors import PipelineError
from ..limits.policies import Timeout
from ..limits.retry import Retry
from ..metrics import StepMetrics
from ..pipeline.options import Batch, Fallback, StepOptions
from ..pipeline.step import FunctionStep, Step
from ..values.checks import check_options
from .client import Client, Connection
from .stats import LLMStats, llm_stats
from .tier.auto import AutoConnection, AutoTier
from .tier.choice import tier_of
from .tier.flex import FlexTier
from .tier.flex_connection import FlexConnection
from .tier.ledger import Ledger
from .tier.settings import BatchTier
from .tier.submitter import BatchConnection

if TYPE_CHECKING:
    from ..engine.context import RunContext

__all__ = ["LLMOptions", "LLMStep"]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class LLMOptions(TypedDict, total=False):
    """The options every LLM step takes beside its own (see :class:`LLMStep`)."""

    version: str
    concurrency: int
    timeout: float | str | Timeout | None
    ordered: bool
    fallback: Fallback | Step[Any, Any] | None
    retry: Retry | None
    cache: bool | Cache | None
    tier: str | BatchTier | FlexTier | AutoTier


LLM_OPTIONS = frozenset(LLMOptions.__annotations__)

Chats = Connection | FlexConnection | BatchConnection | AutoConnection
"""Where an LLM step's chat requests go: the online connection, the flex tier over it,
the batch tier, or the auto tier choosing among them."""


class LLMStep(Step[In, Out]):
    """What every LLM step shares: a client, a model, and the step options.

    Args:
        client: the endpoint, with its rate limit, retries and prices.
        model: a model name or one of the client's aliases.
        name: the step's name in metrics and errors.
        version: bump it to mark a change the fingerprint cannot see.
        concurrency: requests (or packed requests) in flight at once (default 64).
        timeout: the most one item may take in the step (seconds, ``"30s"`` or
            :class:`~headrace.limits.policies.Timeout`); the client's own
            ``timeout`` bounds each request.
        ordered: emit items in the order they entered the step.
        fallback: a step to run on an item this step failed.
        retry: how this step's requests are retried, instead of the client's ``retry``
            (the client's rate limit, circuit and connections are still shared).
        cache: ``True`` or :class:`~headrace.cache.Cache`: answers are kept under the
            step's fingerprint (model, prompts, schema, sampling options) and the
            record, so a changed prompt never gets an old answer.
        tier: ``"online"`` (the default: each request answered now), ``"flex"`` (or
            :class:`~headrace.llm.tier.FlexTier` with its settings): each request
            answered now with the provider's ``service_tier="flex"``, more slowly, at
            its flex price, a capacity refusal waited out (see
            :mod:`headrace.llm.tier.flex`); or ``"batch"``
            (or :class:`~headrace.llm.tier.BatchTier` with its settings): requests are
            gathered into the provider's batches, answered within its completion
            window at half the price, each submitted and paid for at most once
            whatever kills the run (see :mod:`headrace.llm.tier.submitter`). The
            batch tier needs a durable run (``run_dir``; on a cluster each shard keeps
            its own batches in its folder), and sets ``concurrency`` to the batch size
            unless given. The
            tier is not part of the step's fingerprint: the answers are the same.
    """

    kind = "llm"
    batchable = True
    """Whether the step's requests can go on the batch tier (chat requests can)."""

    def __init__(
        self,
        client: Client,
        model: str,
        *,
        name: str,
        batch: Batch | None = None,
        **options: Unpack[LLMOptions],
    ) -> None:
        if not isinstance(client, Client):
            raise PipelineError(f"step {name!r}: client must be hr.llm.Client, got {client!r}")
        if not isinstance(model, str) or not model:
            raise PipelineError(f"step {name!r}: model must be a model name or alias")
        self.client = client
        self.model = model
        owner = f"step {name!r}"
        check_options(options, LLM_OPTIONS, owner)
        # retry is the client's retry of this step's requests (packed ones too), not
        # the function step's per-call retry
        retry = options.pop("retry", None)
        if retry is not None and not isinstance(retry, Retry):
            raise PipelineError(f"step {name!r}: retry must be hr.Retry(...), got {retry!r}")
        self.retry = retry
        self.tier = tier_of(options.pop("tier", None), owner)
        if self.tier is not None and not self.batchable:
            raise PipelineError(
                f"{owner}: the {self.tier_name} tier is for chat requests, not embeddings"
            )
        if isinstance(self.tier, AutoTier) and client.flex_api is None:
            self.tier = replace(self.tier, flex=None)  # no flex there: batch or online
        if isinstance(self.tier, FlexTier) and client.flex_api is None:
            raise PipelineError(
                f"{owner}: {client.base_url} has no flex tier; use tier='batch' for half the "
                "price, or give the client flex_api= if this endpoint has one"
            )
        # the options of the function step it runs as, checked here where it is defined
        batched = self.tier.batch if isinstance(self.tier, AutoTier) else self.tier
        batch_size = batched.max_requests if isinstance(batched, BatchTier) else None
        options.setdefault("concurrency", batch_size or 64)
        self.options = StepOptions.checked(owner, name=name, batch=batch, **options)
        self.name = name
        self.version = self.options.version
        self.concurrency = self.options.slots
        self.batch = self.options.batch
        self.cache = self.options.cache

    @property
    def tier_name(self) -> str:
        """``"online"``, ``"flex"``, ``"batch"`` or ``"auto"``."""
        if isinstance(self.tier, BatchTier):
            return "batch"
        if isinstance(self.tier, AutoTier):
            return "auto"
        return "flex" if isinstance(self.tier, FlexTier) else "online"

    @property
    def model_name(self) -> str:
        """The provider's name of the model."""
        return self.client.model_name(self.model)

    def _slots(self) -> int:
        return self.concurrency * (self.batch.max_size if self.batch is not None else 1)

    def knobs(self) -> frozenset[str]:
        return frozenset({"concurrency", "batch"} if self.batch else {"concurrency"})

    def _tune(self, knob: str, value: int) -> None:
        if knob not in self.knobs():
            super()._tune(knob, value)
        batch = self.batch
        if knob == "batch" and batch is not None:
            batch = Batch(max_size=value, max_wait=batch.max_wait_s)
        concurrency = value if knob == "concurrency" else self.options.concurrency
        self._set_calls(batch, concurrency)

    def _set_calls(self, batch: Batch | None, concurrency: Any) -> None:
        """Change how this step's requests are grouped and how many are in flight."""
        owner = f"step {self.name!r}"
        self.options = self.options.replace(owner, batch=batch, concurrency=concurrency)
        self.batch = self.options.batch
        self.concurrency = self.options.slots

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": f"llm.{type(self).__name__.lower()}",
            "name": self.name,
            "version": self.version,
            "model": self.model_name,
            "endpoint": self.client.identity,
            **self._request_identity(),
        }

    @abc.abstractmethod
    def _request_identity(self) -> dict[str, Any]:
        """What decides the requests this step sends (hashed into its fingerprint)."""

    @abc.abstractmethod
    def _function(self, connection: Chats, metrics: StepMetrics) -> Callable[..., Any]:
        """The function the step runs in one run: per item, or per batch when batched."""

    def _output_type(self) -> Any:
        """What one item's output is (the types the cache may rebuild entries as)."""
        return None


@binds(LLMStep)
def bind_llm_step(step: LLMStep[Any, Any], ctx: RunContext) -> Handler:
    """An LLM step in one run: its connection from the run's pool (rate limit and circuit
    shared with every step of the client), its metrics with token and cost counts, and a
    function step around its requests."""
    metrics = ctx.metrics_for(step.name, "llm")
    priced = step.client.price(step.model) is not None
    source = step.client.price_source(step.model)
    metrics.llm = LLMStats(model=step.model_name, priced=priced, price_source=source)
    if ctx.spend is not None and ctx.spend.budget.usd is not None and not priced:
        raise PipelineError(
            f"step {step.name!r}: the run has a dollar budget but model "
            f"{step.model_name!r} has no price; give the client prices="
            "{name: hr.llm.Price(input=..., output=...)} (dollars per million tokens)"
        )
    connection: Chats
    if isinstance(step.tier, BatchTier):
        connection = _batch_connection(step, step.tier, ctx)
    elif isinstance(step.tier, AutoTier):
        connection = _auto_connection(step, step.tier, ctx, metrics)
    else:
        metrics.rate_inside_call = True  # the client waits for it inside the step's call
        online = step.client.connection_in(ctx)
        metrics.rate = online.rate  # the summary shows the limit and the waits
        metrics.circuit = online.circuit
        connection = online.retrying(step.retry) if step.retry is not None else online
        if isinstance(step.tier, FlexTier):
            connection = FlexConnection(connection, step.tier)
    inner: FunctionStep[Any, Any] = FunctionStep(
        step._function(connection, metrics), options=step.options
    )
    inner.reports_requests = True  # the client counts each 429 it receives
    inner._fingerprint = step.fingerprint  # cache keys follow this step's identity
    inner.output_type = step._output_type()
    return bind_function_step(inner, ctx, metrics)


def _auto_connection(
    step: LLMStep[Any, Any], tier: AutoTier, ctx: RunContext, metrics: StepMetrics
) -> Chats:
    """The step's auto tier in this run: the batch tier, flex where the provider has it,
    and the online connection, against the run's deadline."""
    metrics.rate_inside_call = True  # online requests wait for the limit inside the call
    online = step.client.connection_in(ctx)
    metrics.rate, metrics.circuit = online.rate, online.circuit
    retried = online.retrying(step.retry) if step.retry is not None else online
    rate = online.rate

    def limit_rps() -> float | None:
        rpm = rate.statistics().requests_per_minute if rate is not None else None
        return rpm / 60 if rpm else None

    batches = _batch_connection(step, tier.batch, ctx)
    assert isinstance(batches, BatchConnection)
    flex = FlexConnection(retried, tier.flex) if tier.flex is not None else None
    auto = AutoConnection(
        tier, retried, batches, flex, ctx.deadline_at, step.concurrency, limit_rps,
        stats=llm_stats(metrics),
    )  # fmt: skip
    ctx.on_close_async(auto.close)
    return auto


def _batch_connection(step: LLMStep[Any, Any], tier: BatchTier, ctx: RunContext) -> Chats:
    """The step's batch tier in this run, its ledger in the run's folder."""
    if ctx.run_dir is None:
        raise PipelineError(
            f"step {step.name!r}: the batch tier keeps its batches in the run's folder, so "
            "that a kill never submits or pays for one twice: give the run a run_dir"
        )
    run_dir = ctx.run_dir.resolve()
    batches = BatchConnection(
        step.name,
        tier,
        step.client,
        Ledger(run_dir),
        step.retry or step.client.retry or Retry(),
        hashlib.sha256(str(run_dir).encode()).hexdigest()[:16],
        step.concurrency,
        step.model_name,
        ctx.spend,
        ctx.fence,
    )
    ctx.on_close_async(batches.close)
    return batches
