"""Keeping the input's fields next to a step's output: :func:`with_input`.

The usual enrichment job reads records, asks a model for a few fields, and
writes the record with those fields added (pandas' ``assign``, Curator's
``response`` columns). ``hr.with_input(step)`` does that for any step: its
output is the input record with the output's fields added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PipelineError
from ..io.columns import TypedRecord
from ..values.fields import fields_of
from .step import Step, as_step

if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = ["TypedRecord", "WithInput", "added_fields", "with_input"]


class WithInput(Step[dict[str, Any], dict[str, Any]]):
    """A step whose output is its input record plus its inner step's output fields;
    see :func:`with_input`.

    Args:
        inner: the step run on the record.
        field: put the whole output under this field instead of adding its fields.
        keeps: keep the record found under this name of the input instead of the input
            itself (a recipe's prompt node is handed its template's names, its own
            input under ``"input"``).
    """

    def __init__(
        self, inner: Step[Any, Any], field: str | None, *, keeps: str | None = None
    ) -> None:
        self.inner = inner
        self.field = field
        self.keeps = keeps
        self.name = inner.name

    def children(self) -> tuple[Step[Any, Any], ...]:
        return (self.inner,)

    def _identity(self) -> dict[str, Any]:
        identity = {"kind": "with_input", "inner": self.inner.fingerprint, "field": self.field}
        if self.keeps is not None:  # absent otherwise: fingerprints of older runs stay
            identity["keeps"] = self.keeps
        return identity


def added_fields(output: Any) -> dict[str, Any]:
    """The fields an output adds to its record (:func:`~headrace.values.fields.fields_of`).

    Raises:
        TypeError: the output has no fields (give ``with_input`` a ``field=``).
    """
    if isinstance(output, str):
        raise TypeError(
            "the output is a str, which has no fields to add to the record; name the "
            "field to put it in with with_input(step, field='...')"
        )
    try:
        return fields_of(output)
    except TypeError:
        raise TypeError(
            f"the output is a {type(output).__name__}, which has no fields to add to the "
            "record; name the field to put it in with with_input(step, field='...')"
        ) from None


def with_input(
    step: Step[Any, Any] | Callable[[Any], Any], *, field: str | None = None
) -> Step[dict[str, Any], dict[str, Any]]:
    """Run ``step`` on each record and add its output's fields to the record.

    ``hr.with_input(hr.llm.transduce(Info, ...))`` turns ``{"id": 1, "text": ...}``
    into ``{"id": 1, "text": ..., "kind": ..., "keywords": [...]}``. A field the
    output shares with the record takes the output's value (as pandas' ``assign``).

    Args:
        step: a step (or callable) taking the record; its output is a pydantic
            model, a dataclass or a dict, or anything with ``field``.
        field: put the whole output under this one field instead.

    Raises:
        PipelineError: ``field`` is not a non-empty string.
    """
    if field is not None and (not isinstance(field, str) or not field):
        raise PipelineError(f"with_input field must be a field name, got {field!r}")
    return WithInput(as_step(step, after=None), field)
