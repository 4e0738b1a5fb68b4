"""``embed``: vectors from an embeddings endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

from ..engine.executors import ItemFailure
from ..metrics import StepMetrics
from ..pipeline.step import Batch
from .client import Client, Connection
from .llm_step import Chats, LLMOptions, LLMStep
from .prompts import record_fields, select_fields
from .structured import StructuredOutputError

__all__ = ["Embed", "embed"]


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

    batchable = False  # the batch tier gathers chat requests

    def __init__(
        self,
        *,
        client: Client,
        model: str,
        field: str = "text",
        dimensions: int | None = None,
        batch: Batch | None = None,
        name: str | None = None,
        **options: Unpack[LLMOptions],
    ) -> None:
        self.field = field
        self.dimensions = dimensions
        options.setdefault("concurrency", 4)
        super().__init__(
            client,
            model,
            name=name or "embed",
            batch=batch or Batch(max_size=min(256, client.max_embedding_inputs), max_wait="20ms"),
            **options,
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

    def _function(self, connection: Chats, metrics: StepMetrics) -> Callable[..., Any]:
        assert isinstance(connection, Connection)  # embeddings are never on the batch tier

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


embed = Embed
"""``hr.llm.embed(client=..., model=...)`` makes an :class:`Embed` step."""
