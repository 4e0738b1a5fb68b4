"""LLM steps: ``transduce`` (a record into a Pydantic model), ``complete`` (text),
``embed`` (vectors), each a step that composes like any other.

An LLM step binds to a run as a function step: the same concurrency limit,
micro-batcher (for packing and embeddings), timeout, ordering and fallback as
``@hr.step``; its requests go through its client's budget, circuit, rate limit
and retries (see :mod:`headrace.llm.client`). Its fingerprint holds the model
name, the prompt templates, the output schema and the sampling options, so a
change to any of them never serves stale cached or resumed results.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from ..cache import Cache
from ..errors import PipelineError, positive_int
from ..executors import ItemFailure
from ..limits.policies import Fallback, Timeout
from ..limits.retry import Retry
from ..limits.usage import estimate_tokens
from ..metrics import StepMetrics
from ..step import Batch, FunctionStep, Step
from ..tasks import run_together
from .client import Client, Connection
from .prompts import Template, compact_json, record_fields, select_fields
from .stats import LLMStats
from .structured import Structured, StructuredOutputError

if TYPE_CHECKING:
    from ..runtime import Handler, RunContext

__all__ = ["Complete", "Embed", "LLMStep", "Transduce", "complete", "embed", "transduce"]

M = TypeVar("M", bound=BaseModel)
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)

SYSTEM = (
    "{% if instructions %}{{ instructions }}\n{% endif %}Answer with one JSON object"
    "{% if mode == 'json_object' %} matching this JSON schema: {{ schema_json }}{% endif %}."
)
"""The default system prompt of :func:`transduce`."""

USER = "{{ input_json }}"
"""The default user prompt of :func:`transduce`: the chosen fields as compact JSON."""

PACKED = (
    "\nThe input lists several items, each as [n] followed by the item. Answer every item: "
    'reply {"results": [{"id": n, "output": <the answer for item n>}, ...]}.'
)
REPAIR = (
    "Your answer does not match the required JSON schema: {errors}. "
    "Answer again with only the corrected JSON."
)


class LLMStep(Step[In, Out]):
    """What every LLM step shares: a client, a model, and the step options.

    Args:
        client: the endpoint, with its rate limit, retries and prices.
        model: a model name or one of the client's aliases.
        name: the step's name in metrics and errors.
        version: bump it to mark a change the fingerprint cannot see.
        concurrency: requests (or packed requests) in flight at once.
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
    """

    kind = "llm"

    def __init__(
        self,
        client: Client,
        model: str,
        *,
        name: str,
        version: str = "1",
        concurrency: int = 64,
        timeout: float | str | Timeout | None = None,
        ordered: bool = False,
        fallback: Fallback | Step[Any, Any] | None = None,
        batch: Batch | None = None,
        retry: Retry | None = None,
        cache: bool | Cache | None = None,
    ) -> None:
        if not isinstance(client, Client):
            raise PipelineError(f"step {name!r}: client must be hr.llm.Client, got {client!r}")
        if not isinstance(model, str) or not model:
            raise PipelineError(f"step {name!r}: model must be a model name or alias")
        self.client = client
        self.model = model
        self.name = name
        self.version = str(version)
        self.concurrency = concurrency
        self.timeout = timeout
        self.ordered = ordered
        self.fallback = fallback
        self.batch = batch
        if retry is not None and not isinstance(retry, Retry):
            raise PipelineError(f"step {name!r}: retry must be hr.Retry(...), got {retry!r}")
        self.retry = retry
        self.cache: Cache | bool | None = cache
        self.cache = self._options(_probe).cache  # checks every option now, where defined

    @property
    def model_name(self) -> str:
        """The provider's name of the model."""
        return self.client.model_name(self.model)

    def _options(self, fn: Callable[..., Any]) -> FunctionStep[Any, Any]:
        return FunctionStep(
            fn,
            name=self.name,
            concurrency=self.concurrency,
            timeout=self.timeout,
            ordered=self.ordered,
            batch=self.batch,
            fallback=self.fallback,
            cache=self.cache,
        )

    def _slots(self) -> int:
        return self.concurrency * (self.batch.max_size if self.batch is not None else 1)

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
    def _function(self, connection: Connection, metrics: StepMetrics) -> Callable[..., Any]:
        """The function the step runs in one run: per item, or per batch when batched."""

    def _output_type(self) -> Any:
        """What one item's output is (the types the cache may rebuild entries as)."""
        return None

    def _bind(self, ctx: RunContext) -> Handler:
        from ..call import bind_function_step

        metrics = ctx.metrics_for(self.name, "llm")
        priced = self.client.price(self.model) is not None
        metrics.llm = LLMStats(model=self.model_name, priced=priced)
        if ctx.spend is not None and ctx.spend.budget.usd is not None and not priced:
            raise PipelineError(
                f"step {self.name!r}: the run has a dollar budget but model "
                f"{self.model_name!r} has no price; give the client prices="
                "{name: hr.llm.Price(input=..., output=...)} (dollars per million tokens)"
            )
        metrics.rate = self.client.rate  # the summary shows the limit and the waits
        metrics.rate_inside_call = True  # the client waits for it inside the step's call
        connection = self.client.connection_in(ctx)
        metrics.circuit = connection.circuit
        if self.retry is not None:
            connection = connection.retrying(self.retry)
        inner = self._options(self._function(connection, metrics))
        inner.reports_throttles = True  # the client counts each 429 it receives
        inner._fingerprint = self.fingerprint  # cache keys follow this step's identity
        inner.output_type = self._output_type()
        return bind_function_step(inner, ctx, metrics)


class Transduce(LLMStep[Any, M], Generic[M]):
    """A step that turns each record into an ``output`` model, by asking an LLM.

    The prompt is built from the chosen ``fields`` of the record (compact JSON),
    the ``instructions``, and the model's JSON schema (in ``response_format``).
    The answer is validated; a failed one gets one repair turn with the
    validation errors, and fails the item (a dead letter naming the errors) if
    it fails again.

    Args:
        output: the Pydantic model of an answer.
        client: the endpoint (:class:`~headrace.llm.client.Client`).
        model: a model name or an alias of the client.
        instructions: what to do, as the system prompt says it.
        fields: the record's fields the prompt shows (default: all).
        template: the user prompt (Jinja2, sandboxed); it sees the fields by name
            and ``input_json`` (the chosen fields as JSON). Default: ``input_json``.
        system: the system prompt; it sees ``instructions``, ``schema_json``,
            ``mode`` and the fields. Default: :data:`SYSTEM`.
        pack: items per request. Several items go in one request as a numbered
            list and come back as a JSON array; an item the answer drops or
            mangles is sent again alone.
        pack_wait: how long a partly filled pack waits for more items.
        allow_partial: accept an answer whose only invalid fields are optional.
        repair: send one repair turn after an invalid answer.
        mode: ``"json_schema"`` or ``"json_object"`` (see
            :class:`~headrace.llm.structured.Structured`).
        temperature: sampling temperature (default: the provider's).
        max_tokens: the completion ceiling per item.
        name, version, concurrency, timeout, ordered, fallback, retry, cache: as for
            :class:`LLMStep`.
    """

    def __init__(
        self,
        output: type[M],
        *,
        client: Client,
        model: str,
        instructions: str = "",
        fields: Sequence[str] | None = None,
        template: str | None = None,
        system: str | None = None,
        pack: int = 1,
        pack_wait: float | str = "20ms",
        allow_partial: bool = False,
        repair: bool = True,
        mode: str = "json_schema",
        temperature: float | None = None,
        max_tokens: int | None = None,
        name: str | None = None,
        version: str = "1",
        concurrency: int = 64,
        timeout: float | str | Timeout | None = None,
        ordered: bool = False,
        fallback: Fallback | Step[Any, Any] | None = None,
        retry: Retry | None = None,
        cache: bool | Cache | None = None,
    ) -> None:
        name = name or f"transduce({getattr(output, '__name__', output)})"
        self.structured = Structured(output, allow_partial=allow_partial, mode=mode)
        positive_int(pack, f"step {name!r}: pack")
        if isinstance(fields, str):
            fields = [fields]
        self.fields = list(fields) if fields is not None else None
        self.instructions = instructions
        self.user = Template(template or USER, where=f"step {name!r} template")
        self.system = Template(system or SYSTEM, where=f"step {name!r} system prompt")
        self.pack = pack
        self.repair = repair
        self.temperature = temperature
        self.max_tokens = max_tokens
        batch = Batch(max_size=pack, max_wait=pack_wait) if pack > 1 else None
        super().__init__(
            client,
            model,
            name=name,
            version=version,
            concurrency=concurrency,
            timeout=timeout,
            ordered=ordered,
            fallback=fallback,
            batch=batch,
            retry=retry,
            cache=cache,
        )

    def _request_identity(self) -> dict[str, Any]:
        return {
            "schema": self.structured.schema,
            "mode": self.structured.mode,
            "allow_partial": self.structured.allow_partial,
            "repair": self.repair,
            "instructions": self.instructions,
            "fields": self.fields,
            "template": self.user.source,
            "system": self.system.source,
            "pack": self.pack,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _variables(self, record: Any) -> dict[str, Any]:
        fields = select_fields(record_fields(record), self.fields)
        return {
            **fields,
            "input_json": compact_json(fields),
            "instructions": self.instructions,
            "schema_json": self.structured.schema_json,
            "mode": self.structured.mode,
        }

    def _body(self, system: str, user: str, *, packed: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "response_format": self.structured.response_format(packed=packed),
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens * (self.pack if packed else 1)
        return body

    def _parts(self, record: Any) -> tuple[str, str]:
        """The system and user prompts for one record."""
        variables = self._variables(record)
        return self.system.render(variables), self.user.render(variables)

    def request(self, record: Any) -> dict[str, Any]:
        """The request body for one record: the same record, the same bytes.

        Raises:
            PromptError: the record lacks a field the step or its template uses.
        """
        return self._body(*self._parts(record), packed=False)

    def packed_request(self, records: Sequence[Any]) -> dict[str, Any]:
        """The request body for several records in one (``pack=``)."""
        return self._packed_body([self._parts(record) for record in records])

    def _packed_body(self, parts: Sequence[tuple[str, str]]) -> dict[str, Any]:
        lines = [f"[{number}] {user}" for number, (_, user) in enumerate(parts, start=1)]
        return self._body(parts[0][0] + PACKED, "\n".join(lines), packed=True)

    async def answer(self, connection: Connection, body: dict[str, Any], metrics: StepMetrics) -> M:
        """Send ``body``; validate the answer, with one repair turn if it fails."""
        stats = metrics.llm
        assert stats is not None
        reply = await connection.chat(body, metrics)
        try:
            output, partial = self.structured.parse(reply.content)
        except StructuredOutputError as first:
            if not self.repair:
                raise
            stats.repairs += 1
            repair = {
                **body,
                "messages": [
                    *body["messages"],
                    {"role": "assistant", "content": reply.content},
                    {"role": "user", "content": REPAIR.format(errors=first)},
                ],
            }
            reply = await connection.chat(repair, metrics)
            try:
                output, partial = self.structured.parse(reply.content)
            except StructuredOutputError as second:
                raise StructuredOutputError(
                    f"{second} (after one repair turn; the first answer: {first})"
                ) from None
        stats.partial += partial
        return output

    def _output_type(self) -> Any:
        return self.structured.model

    def _function(self, connection: Connection, metrics: StepMetrics) -> Callable[..., Any]:
        async def one(record: Any) -> M:
            return await self.answer(connection, self.request(record), metrics)

        if self.pack == 1:
            return one

        async def alone(record: Any) -> Any:
            try:
                return await one(record)
            except Exception as exc:
                return ItemFailure(exc)

        async def packed(records: list[Any]) -> list[Any]:
            if len(records) == 1:
                return [await one(records[0])]
            return await self._packed(connection, metrics, records, alone)

        return packed

    async def _packed(
        self,
        connection: Connection,
        metrics: StepMetrics,
        records: list[Any],
        alone: Callable[[Any], Any],
    ) -> list[Any]:
        """One request for several records; what it misses is sent again alone."""
        stats = metrics.llm
        assert stats is not None
        outputs: list[Any] = [None] * len(records)
        parts: list[tuple[str, str]] = []
        runnable: list[int] = []
        for index, record in enumerate(records):
            try:
                parts.append(self._parts(record))
                runnable.append(index)
            except Exception as exc:  # the record cannot fill the prompt: it fails alone
                outputs[index] = ItemFailure(exc)
        if not parts:
            return outputs
        body = self._packed_body(parts)
        alone_tokens = sum(estimate_tokens(self._body(*p, packed=False)) for p in parts)
        stats.packed_requests += 1
        stats.packed_items += len(runnable)
        stats.tokens_saved += alone_tokens - estimate_tokens(body)
        reply = await connection.chat(body, metrics)
        try:
            found = self.structured.parse_packed(reply.content, len(runnable))
        except StructuredOutputError:
            found = {}
        again: list[int] = []
        for number, index in enumerate(runnable, start=1):
            raw = found.get(number)
            try:
                if raw is None:
                    raise StructuredOutputError("missing from the packed answer")
                output, partial = self.structured.validate(raw)
            except StructuredOutputError:
                again.append(index)
                continue
            stats.partial += partial
            outputs[index] = output
        stats.solo_retries += len(again)
        answers = await run_together([functools.partial(alone, records[i]) for i in again])
        for index, answer in zip(again, answers, strict=True):
            outputs[index] = answer
        return outputs


class Complete(LLMStep[Any, str]):
    """A step that answers ``prompt``, filled from each record, with the model's text.

    Args:
        client: the endpoint.
        model: a model name or an alias of the client.
        prompt: the user prompt: ``"Summarise: {text}"`` or Jinja2 (sandboxed).
            A string record is seen as the field ``text``.
        system: an optional system prompt, filled the same way.
        stream: read the answer as a stream; the step's metrics then hold the time
            to the first token and tokens per second.
        temperature: sampling temperature (default: the provider's).
        max_tokens: the completion ceiling.
        name, version, concurrency, timeout, ordered, fallback, retry, cache: as for
            :class:`LLMStep`.
    """

    def __init__(
        self,
        *,
        client: Client,
        model: str,
        prompt: str,
        system: str | None = None,
        stream: bool = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        name: str | None = None,
        version: str = "1",
        concurrency: int = 64,
        timeout: float | str | Timeout | None = None,
        ordered: bool = False,
        fallback: Fallback | Step[Any, Any] | None = None,
        retry: Retry | None = None,
        cache: bool | Cache | None = None,
    ) -> None:
        name = name or "complete"
        self.prompt = Template(prompt, where=f"step {name!r} prompt")
        self.system = Template(system, where=f"step {name!r} system") if system else None
        self.stream = bool(stream)
        self.temperature = temperature
        self.max_tokens = max_tokens
        super().__init__(
            client,
            model,
            name=name,
            version=version,
            concurrency=concurrency,
            timeout=timeout,
            ordered=ordered,
            fallback=fallback,
            retry=retry,
            cache=cache,
        )

    def _request_identity(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt.source,
            "system": self.system.source if self.system else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def request(self, record: Any) -> dict[str, Any]:
        """The request body for one record."""
        variables = record_fields(record)
        messages = [{"role": "user", "content": self.prompt.render(variables)}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system.render(variables)})
        body: dict[str, Any] = {"model": self.model_name, "messages": messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def _function(self, connection: Connection, metrics: StepMetrics) -> Callable[..., Any]:
        stream = self.stream

        async def one(record: Any) -> str:
            reply = await connection.chat(self.request(record), metrics, stream=stream)
            return reply.content

        return one


class Embed(LLMStep[Any, list[float]]):
    """A step that embeds each record's text: items are batched into requests.

    Args:
        client: the endpoint.
        model: an embedding model name or alias.
        field: the record's text field (a string record is the text itself).
        dimensions: ask for shorter vectors (models that support it).
        batch: how items are gathered into one request (default up to 256, waiting
            20 ms); a batch larger than the client's ``max_embedding_inputs`` is split.
        name, version, concurrency, timeout, ordered, fallback, retry, cache: as for
            :class:`LLMStep`
            (``concurrency`` counts requests in flight).
    """

    def __init__(
        self,
        *,
        client: Client,
        model: str,
        field: str = "text",
        dimensions: int | None = None,
        batch: Batch | None = None,
        name: str | None = None,
        version: str = "1",
        concurrency: int = 4,
        timeout: float | str | Timeout | None = None,
        ordered: bool = False,
        fallback: Fallback | Step[Any, Any] | None = None,
        retry: Retry | None = None,
        cache: bool | Cache | None = None,
    ) -> None:
        self.field = field
        self.dimensions = dimensions
        super().__init__(
            client,
            model,
            name=name or "embed",
            version=version,
            concurrency=concurrency,
            timeout=timeout,
            ordered=ordered,
            fallback=fallback,
            batch=batch or Batch(max_size=min(256, client.max_embedding_inputs), max_wait="20ms"),
            retry=retry,
            cache=cache,
        )

    def _request_identity(self) -> dict[str, Any]:
        return {"field": self.field, "dimensions": self.dimensions}

    def text_of(self, record: Any) -> str:
        """The text to embed: the record itself (a string) or its ``field``."""
        if isinstance(record, str):
            return record
        value = select_fields(record_fields(record), [self.field])[self.field]
        if not isinstance(value, str):
            raise StructuredOutputError(
                f"field {self.field!r} holds {type(value).__name__}, not text"
            )
        return value

    def _function(self, connection: Connection, metrics: StepMetrics) -> Callable[..., Any]:
        async def many(records: list[Any]) -> list[Any]:
            outputs: list[Any] = [None] * len(records)
            texts, places = [], []
            for index, record in enumerate(records):
                try:
                    texts.append(self.text_of(record))
                    places.append(index)
                except Exception as exc:
                    outputs[index] = ItemFailure(exc)
            if texts:
                vectors = await connection.embed(
                    texts, self.model_name, metrics, dimensions=self.dimensions
                )
                for index, vector in zip(places, vectors, strict=True):
                    outputs[index] = vector
            return outputs

        return many


async def _probe(value: Any) -> Any:
    return value


transduce = Transduce
"""``hr.llm.transduce(Model, client=..., model=..., ...)`` makes a :class:`Transduce` step."""

complete = Complete
"""``hr.llm.complete(client=..., model=..., prompt=...)`` makes a :class:`Complete` step."""

embed = Embed
"""``hr.llm.embed(client=..., model=...)`` makes an :class:`Embed` step."""
