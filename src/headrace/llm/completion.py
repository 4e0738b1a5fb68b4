"""``complete``: text from a prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

from ..errors import PipelineError
from ..metrics import StepMetrics
from .client import Client
from .llm_step import Chats, LLMOptions, LLMStep
from .prompts import Template, record_fields

__all__ = ["Complete", "complete"]


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
        **options: Unpack[LLMOptions],
    ) -> None:
        name = name or "complete"
        self.prompt = Template(prompt, where=f"step {name!r} prompt")
        self.system = Template(system, where=f"step {name!r} system") if system else None
        self.stream = bool(stream)
        self.temperature = temperature
        self.max_tokens = max_tokens
        super().__init__(client, model, name=name, **options)
        if self.stream and self.tier_name == "batch":
            raise PipelineError(f"step {name!r}: a batch-tier answer cannot be streamed")

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

    def _function(self, connection: Chats, metrics: StepMetrics) -> Callable[..., Any]:
        stream = self.stream

        async def one(record: Any) -> str:
            reply = await connection.chat(self.request(record), metrics, stream=stream)
            return reply.content

        return one


complete = Complete
"""``hr.llm.complete(client=..., model=..., prompt=...)`` makes a :class:`Complete` step."""
