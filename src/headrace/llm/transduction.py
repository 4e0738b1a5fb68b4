"""``transduce``: a record into a Pydantic model, by asking an LLM."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, Unpack

from pydantic import BaseModel

from ..engine.executors import ItemFailure
from ..engine.tasks import run_together
from ..limits.usage import estimate_tokens
from ..metrics import StepMetrics
from ..pipeline.step import Batch
from ..values.checks import positive_int
from .client import Client
from .llm_step import Chats, LLMOptions, LLMStep
from .prompts import Template, compact_json, record_fields, select_fields
from .stats import llm_stats
from .structured import Structured, StructuredOutputError

__all__ = ["Transduce", "transduce"]

M = TypeVar("M", bound=BaseModel)

SYSTEM = (
    "{% if instructions %}{{ instructions }}\n{% endif %}Answer with one JSON object"
    "{% if mode == 'json_object' %} matching this JSON schema: {{ schema_json }}{% endif %}."
)
"""The default system prompt of :func:`transduce`."""

USER = "{{ input_json }}"
"""The default user prompt of :func:`transduce`: the chosen fields as compact JSON."""

PACK_WAIT = 0.02
"""How long a partly filled pack waits for more items, in seconds (``pack_wait=``)."""

PACKED = (
    "\nThe input lists several items, each as [n] followed by the item. Answer every item: "
    'reply {"results": [{"id": n, "output": <the answer for item n>}, ...]}.'
)
REPAIR = (
    "Your answer does not match the required JSON schema: {errors}. "
    "Answer again with only the corrected JSON."
)


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
        pack_wait: float | str = PACK_WAIT,
        allow_partial: bool = False,
        repair: bool = True,
        mode: str = "json_schema",
        temperature: float | None = None,
        max_tokens: int | None = None,
        name: str | None = None,
        **options: Unpack[LLMOptions],
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
        super().__init__(client, model, name=name, batch=batch, **options)

    def knobs(self) -> frozenset[str]:
        return frozenset({"concurrency", "pack"})

    def _tune(self, knob: str, value: int) -> None:
        if knob != "pack":
            super()._tune(knob, value)
            return
        positive_int(value, f"step {self.name!r}: pack")
        wait = self.batch.max_wait_s if self.batch is not None else PACK_WAIT
        self.pack = value
        self._fingerprint = None  # the pack is in the requests
        batch = Batch(max_size=value, max_wait=wait) if value > 1 else None
        self._set_calls(batch, self.options.concurrency)

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

    async def answer(self, connection: Chats, body: dict[str, Any], metrics: StepMetrics) -> M:
        """Send ``body``; validate the answer, with one repair turn if it fails."""
        stats = llm_stats(metrics)
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

    def _function(self, connection: Chats, metrics: StepMetrics) -> Callable[..., Any]:
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
        connection: Chats,
        metrics: StepMetrics,
        records: list[Any],
        alone: Callable[[Any], Any],
    ) -> list[Any]:
        """One request for several records; what it misses is sent again alone."""
        stats = llm_stats(metrics)
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


transduce = Transduce
"""``hr.llm.transduce(Model, client=..., model=..., ...)`` makes a :class:`Transduce` step."""
