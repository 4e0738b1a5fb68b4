"""What the simulated provider says: text, or JSON that follows the request's schema.

A request with ``response_format`` ``{"type": "json_schema", ...}`` gets an
instance of the schema drawn from a generator seeded by the model and the item's
text (the last user message, or a packed request's numbered line), so an item
always gets the same answer, sent alone or packed with any others. ``{"type": "json_object"}`` gets
``{"answer": <text>}``.

**Packed requests.** headrace's ``pack=`` puts several items in one request, one
per line as ``[n] {...}``, and asks for ``{"results": [{"id": n, "output": ...}]}``.
The simulator answers such a request as a model that follows the instruction
does: one result per numbered line, in order. The ``drop``, ``shuffle`` and
``invalid`` faults spoil that answer the way real models sometimes do.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

__all__ = ["WORDS", "instance", "numbered_items", "spoil", "structured_answer"]

TEXT = (
    "the river runs fast past the mill and the wheel turns once for every item that "
    "reaches the head of the race where water gathers before it falls"
)
WORDS = tuple(TEXT.split(" "))
"""The words every simulated answer is drawn from."""
_NUMBERED = re.compile(r"^\[(\d+)\] ", re.MULTILINE)
_MAX_DEPTH = 8


def numbered_items(messages: list[Any]) -> list[tuple[int, str]]:
    """The items ``[n] text`` at line starts in the last user message, as ``(n, text)``."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else ""
            marks = list(_NUMBERED.finditer(text))
            ends = [m.start() for m in marks[1:]] + [len(text)]
            return [
                (int(m.group(1)), text[m.end() : end].strip())
                for m, end in zip(marks, ends, strict=True)
            ]
    return []


def _is_packed(schema: dict[str, Any]) -> bool:
    results = (schema.get("properties") or {}).get("results")
    if not isinstance(results, dict) or results.get("type") != "array":
        return False
    item = results.get("items") or {}
    return {"id", "output"} <= set((item.get("properties") or {}).keys())


def structured_answer(
    schema: dict[str, Any], messages: list[Any], rng: random.Random, model: Any = None
) -> Any:
    """An answer to a ``json_schema`` request: an instance of ``schema``.

    An item's answer depends on the model and the item's own text alone: the same
    whether it was sent alone (the last user message) or packed with others (its
    ``[n]`` line), so a run's outputs do not depend on how its items were grouped.
    """
    defs = schema.get("$defs") or schema.get("definitions") or {}
    if _is_packed(schema):
        item_schema = schema["properties"]["results"]["items"]["properties"]["output"]
        return {
            "results": [
                {"id": n, "output": instance(item_schema, _item_rng(model, text), defs)}
                for n, text in numbered_items(messages)
            ]
        }
    text = _last_user_text(messages)
    return instance(schema, rng if text is None else _item_rng(model, text), defs)


def _item_rng(model: Any, text: str) -> random.Random:
    return random.Random(f"{model}\n{text.strip()}")


def _last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def instance(schema: Any, rng: random.Random, defs: dict[str, Any], depth: int = 0) -> Any:
    """A value that ``schema`` (a JSON schema, as Pydantic writes them) accepts."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return instance(defs.get(name, {}), rng, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            concrete = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return instance(rng.choice(concrete or options), rng, defs, depth + 1)
    if "default" in schema and rng.random() < 0.2:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or properties)
        return {
            name: instance(sub, rng, defs, depth + 1)
            for name, sub in properties.items()
            if name in required or rng.random() < 0.5
        }
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        return [
            instance(schema.get("items") or {}, rng, defs, depth + 1)
            for _ in range(rng.randint(low, max(low, high)))
        ]
    if kind == "integer":
        least, most = _bounds(schema, 0, 100)
        return rng.randint(int(least), int(most))
    if kind == "number":
        least, most = _bounds(schema, 0.0, 1.0)
        return round(rng.uniform(least, most), 4)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    low = int(schema.get("minLength", 1))
    high = int(schema.get("maxLength", 60))
    words: list[str] = []
    while len(" ".join(words)) < low or not words:
        words.append(rng.choice(WORDS))
        if rng.random() < 0.3:
            break
    return " ".join(words)[:high]


def _bounds(schema: dict[str, Any], low: float, high: float) -> tuple[float, float]:
    least = float(schema.get("minimum", schema.get("exclusiveMinimum", low)))
    most = float(schema.get("maximum", schema.get("exclusiveMaximum", max(high, least))))
    return least, most


def spoil(answer: Any, fault: str, rng: random.Random) -> Any:
    """The answer with the structured-output ``fault`` applied: ``drop`` (a packed
    answer loses one result), ``shuffle`` (its results come in another order),
    ``invalid`` (the first field of the answer, or of one packed result, gets a
    value the schema refuses)."""
    answer = copy.deepcopy(answer)
    found = answer.get("results") if isinstance(answer, dict) else None
    results: list[Any] = found if isinstance(found, list) else []
    packed = len(results) > 0
    if fault == "drop" and packed:
        del results[rng.randrange(len(results))]
    elif fault == "shuffle" and packed and len(results) > 1:
        results.reverse()
    elif fault == "invalid":
        target = results[rng.randrange(len(results))]["output"] if packed else answer
        if isinstance(target, dict) and target:
            target[next(iter(target))] = {"not": "what the schema asked for"}
        elif packed:
            results[0]["output"] = "not what the schema asked for"
        else:
            answer = {"not": "what the schema asked for"}
    return answer
