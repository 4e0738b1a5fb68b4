"""What a recipe's nodes declare about their outputs, to check names against them.

``headrace validate`` (and loading a recipe) checks that a condition's
``node.field`` and a map's ``over:`` name fields the node before declares: an
LLM node's output model, a function's return annotation (a Pydantic model, a
dataclass or a TypedDict). Where nothing is declared, nothing is checked.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ..pipeline.step import Step

__all__ = ["declared_fields"]


def declared_fields(step: Step[Any, Any]) -> list[str] | None:
    """The fields of ``step``'s output as it declares them, or ``None`` if unknown."""
    from ..engine.outputs import declared_item_type

    kind = declared_item_type(step)
    return fields_of_type(kind)


def fields_of_type(kind: Any) -> list[str] | None:
    """The field names of a Pydantic model, dataclass or TypedDict class; else ``None``."""
    if not isinstance(kind, type):
        return None
    model_fields = getattr(kind, "model_fields", None)
    if isinstance(model_fields, dict):
        return list(model_fields)
    if dataclasses.is_dataclass(kind):
        return [f.name for f in dataclasses.fields(kind)]
    if typing.is_typeddict(kind):
        return list(typing.get_type_hints(kind))
    return None
