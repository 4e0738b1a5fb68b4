"""A stored pipeline reference: a Python one (``module:attribute``) or a recipe
(``recipe:{"path": ..., "set": [...], "allow_paths": [...]}``), read back as untrusted."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["pipeline_words", "recipe_path"]


def recipe_path(pipeline: Any) -> str | None:
    """The recipe file a stored pipeline reference names (``recipe:{"path": ...}``),
    ``"<unreadable>"`` for a damaged one, ``None`` for a Python one."""
    if not isinstance(pipeline, str) or not pipeline.startswith("recipe:"):
        return None
    try:
        path = orjson.loads(pipeline.removeprefix("recipe:")).get("path")
    except (orjson.JSONDecodeError, AttributeError):
        return "<unreadable>"
    return str(path)


def pipeline_words(ref: object) -> str:
    """A stored pipeline reference, in words: a recipe by its file and settings
    (``recipe r.yaml --set run.concurrency=16``), a Python one as it is."""
    text = str(ref)
    if not text.startswith("recipe:"):
        return text
    try:
        settings = orjson.loads(text.removeprefix("recipe:"))
        words = f"recipe {settings['path']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return text
    for name, label in (("set", "--set"), ("allow_paths", "--allow-path")):
        values = settings.get(name) or []
        if isinstance(values, list):
            words += "".join(f" {label} {value}" for value in values)
    return words
