"""Structured output: a Pydantic model's JSON schema out, a validated model back.

An answer that fails validation gets one repair turn: the answer and the
validation errors go back to the model, which answers again. With
``allow_partial`` an answer whose only failures are optional fields is
accepted with those fields left at their defaults.

A packed request (``pack=N``) lists its items as ``[1] {...}``, ``[2] {...}``
and asks for ``{"results": [{"id": 1, "output": {...}}, ...]}``: results are
matched by ``id``, so a reordered array is read correctly, and an item whose
result is missing or invalid is sent again alone.
"""

from __future__ import annotations

import contextlib
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from ..errors import PipelineError, StructuredOutputError

__all__ = ["Structured", "StructuredOutputError"]

M = TypeVar("M", bound=BaseModel)
_MAX_ERRORS = 5


def _loads(text: str) -> Any:
    body = text.strip()
    if body.startswith("```"):  # a fenced block: ```json ... ```
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return orjson.loads(body)


def describe_errors(error: ValidationError) -> str:
    """A validation error in one short line: ``field.path: message; ...``."""
    parts = []
    for item in error.errors()[:_MAX_ERRORS]:
        where = ".".join(str(p) for p in item["loc"]) or "(the answer)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - _MAX_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class Structured(Generic[M]):
    """How one output model is asked for and read back.

    Args:
        model: the Pydantic model of an answer.
        allow_partial: accept an answer whose only invalid fields are optional ones.
        mode: ``"json_schema"`` (the schema in ``response_format``, as OpenAI,
            vLLM and Ollama take it) or ``"json_object"`` (JSON mode, with the
            schema written into the prompt, for endpoints without schemas).
    """

    def __init__(self, model: type[M], *, allow_partial: bool, mode: str) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PipelineError(f"transduce needs a Pydantic model class, got {model!r}")
        if mode not in ("json_schema", "json_object"):
            raise PipelineError(f"mode must be 'json_schema' or 'json_object', got {mode!r}")
        self.model = model
        self.allow_partial = allow_partial
        self.mode = mode
        self.schema: dict[str, Any] = model.model_json_schema()
        self.schema_json = orjson.dumps(self.schema, option=orjson.OPT_SORT_KEYS).decode()
        """The schema as compact JSON (for a prompt)."""
        self.optional = {
            name for name, info in model.model_fields.items() if not info.is_required()
        }

    def packed_schema(self) -> dict[str, Any]:
        """The schema of a packed answer: results carrying an ``id`` and an ``output``."""
        item = {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "output": self._output_schema()},
            "required": ["id", "output"],
        }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"results": {"type": "array", "items": item}},
            "required": ["results"],
        }
        if "$defs" in self.schema:
            schema["$defs"] = self.schema["$defs"]
        return schema

    def _output_schema(self) -> dict[str, Any]:
        return {k: v for k, v in self.schema.items() if k != "$defs"}

    def response_format(self, *, packed: bool = False) -> dict[str, Any]:
        """The request's ``response_format``."""
        if self.mode == "json_object":
            return {"type": "json_object"}
        name = self.model.__name__ + ("_batch" if packed else "")
        schema = self.packed_schema() if packed else self.schema
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}

    def parse(self, text: str) -> tuple[M, bool]:
        """An answer's text as the model; and whether it was accepted as partial.

        Raises:
            StructuredOutputError: not JSON, or not valid (the message lists the errors).
        """
        try:
            data = _loads(text)
        except orjson.JSONDecodeError as exc:
            raise StructuredOutputError(f"the answer is not JSON: {exc}") from None
        return self.validate(data)

    def validate(self, data: Any) -> tuple[M, bool]:
        """Parsed JSON as the model; and whether it was accepted as partial."""
        try:
            return self.model.model_validate(data), False
        except ValidationError as exc:
            if self.allow_partial and isinstance(data, dict):
                failed = {str(item["loc"][0]) for item in exc.errors() if item["loc"]}
                if failed and failed <= self.optional:
                    kept = {k: v for k, v in data.items() if k not in failed}
                    with contextlib.suppress(ValidationError):
                        return self.model.model_validate(kept), True
            raise StructuredOutputError(
                f"the answer does not match {self.model.__name__}: {describe_errors(exc)}"
            ) from None

    def parse_packed(self, text: str, count: int) -> dict[int, Any]:
        """A packed answer's results by item number (1..count): raw, not yet validated.

        Raises:
            StructuredOutputError: not JSON, or no ``results`` list.
        """
        try:
            data = _loads(text)
        except orjson.JSONDecodeError as exc:
            raise StructuredOutputError(f"the packed answer is not JSON: {exc}") from None
        results = data.get("results") if isinstance(data, dict) else data
        if not isinstance(results, list):
            raise StructuredOutputError("the packed answer has no 'results' list")
        found: dict[int, Any] = {}
        for entry in results:
            if isinstance(entry, dict) and isinstance(entry.get("id"), int):
                number = entry["id"]
                if 1 <= number <= count and number not in found:
                    found[number] = entry.get("output")
        return found
