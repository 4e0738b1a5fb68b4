"""An item's fields by name: the one view conditions, prompts, sinks and plans share.

Every part of headrace that reads an item by field name reads it through
:func:`fields_of`, so a condition (``tone.tone == 'combative'``), a prompt
(``{{ text }}``), a Parquet column and the dry run's prompt estimate see the
same fields with the same values:

- a mapping: its items;
- a Pydantic model: ``model_dump(mode="json")`` (nested models as objects,
  dates as ISO text: what its JSON says);
- a dataclass: its fields, nested dataclasses as objects;
- a string: ``{"text": the string}`` (what an LLM answer or a line of text is);
- anything else has no fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["fields_of"]


def fields_of(item: Any, *, strict: bool = True) -> dict[str, Any]:
    """``item``'s fields by name (see the module's notes).

    Args:
        item: the item.
        strict: raise for an item with no fields (else return ``{}``).

    Raises:
        TypeError: with ``strict``, an item that is not a mapping, a Pydantic
            model, a dataclass or a string.
    """
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump) and not isinstance(item, type):
        fields = dump(mode="json")
        if isinstance(fields, dict):
            return fields
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    if isinstance(item, str):
        return {"text": item}
    if not strict:
        return {}
    raise TypeError(
        f"expected a record (a dict, a Pydantic model, a dataclass or a string), "
        f"got {type(item).__name__}"
    )
