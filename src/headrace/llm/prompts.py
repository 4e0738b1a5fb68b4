"""Prompts: the fields of a record, and templates rendered in a sandbox.

A template is Jinja2, rendered in :mod:`headrace.sandbox` (no attribute that
starts with ``_``, no calls but whitelisted filters, no imports, undefined names
are errors), the same sandbox recipe conditions use. A template with no Jinja
markers may name fields the short way, ``"Summarise: {text}"``; only plain names
are replaced, so ``{x.__class__}`` stays text.

Rendering is deterministic: the same record gives the same prompt bytes (records
are written as JSON with sorted keys), so cache and resume keys stay stable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..errors import PipelineError, PromptError
from ..values.fields import fields_of

__all__ = ["PromptError", "Template", "compact_json", "record_fields", "select_fields"]

_SHORT_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JINJA = re.compile(r"\{\{|\{%|\{#")


def compact_json(value: Any) -> str:
    """``value`` as compact JSON with sorted keys (the same value, the same text)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def record_fields(record: Any) -> dict[str, Any]:
    """A record as a dict of fields (:func:`~headrace.values.fields.fields_of`: a mapping, a
    Pydantic model, a dataclass, or a string as ``{"text": ...}``).

    Raises:
        PromptError: any other kind of value.
    """
    try:
        return fields_of(record)
    except TypeError:
        raise PromptError(
            f"an LLM step takes a dict, a Pydantic model, a dataclass or a string; "
            f"got {type(record).__name__}"
        ) from None


def select_fields(fields: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    """The named fields only (all of them when ``names`` is ``None``).

    Raises:
        PromptError: a named field is missing (the error lists the fields there are).
    """
    if names is None:
        return fields
    missing = [name for name in names if name not in fields]
    if missing:
        raise PromptError(
            f"the record has no field {', '.join(map(repr, missing))} (it has: "
            f"{', '.join(sorted(fields)) or 'none'})"
        )
    return {name: fields[name] for name in names}


class Template:
    """A prompt template, compiled once where the step is defined.

    Args:
        source: Jinja2 text, or text with ``{field}`` names.
        where: what the template belongs to, for error messages.

    Raises:
        PipelineError: the template does not parse.
    """

    def __init__(self, source: str, *, where: str) -> None:
        if not isinstance(source, str):
            raise PipelineError(f"{where}: a template must be a string, got {source!r}")
        self.source = source
        self.where = where
        self._jinja: Any = None
        if _JINJA.search(source):
            from ..sandbox import compile_checked

            try:
                self._jinja = compile_checked(source, template=True)
            except PipelineError as exc:
                raise PipelineError(f"{where}: the template {exc}") from None

    def __getstate__(self) -> dict[str, Any]:
        # A compiled Jinja template does not unpickle (jinja2's Template.__new__ wants
        # its source), so a step shipped to Ray workers carries the text and compiles
        # it again where it lands.
        return {"source": self.source, "where": self.where}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], where=state["where"])  # type: ignore[misc]

    def render(self, variables: Mapping[str, Any]) -> str:
        """The template filled from ``variables``.

        Raises:
            PromptError: a name the template uses is missing, or the sandbox refused
                an operation.
        """
        if self._jinja is None:

            def field(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in variables:
                    raise PromptError(
                        f"{self.where}: the template names {{{name}}}, which the record "
                        f"does not have (it has: {', '.join(sorted(variables))})"
                    )
                value = variables[name]
                return value if isinstance(value, str) else compact_json(value)

            return _SHORT_FIELD.sub(field, self.source)
        from jinja2 import TemplateError

        from ..sandbox import render

        try:
            text: str = render(self._jinja, variables)
        except TemplateError as exc:  # the sandbox's SecurityError included
            raise PromptError(f"{self.where}: {type(exc).__name__}: {exc}") from None
        return text
