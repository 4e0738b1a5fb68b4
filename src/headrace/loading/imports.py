"""Importing by name: the one way headrace turns ``module.path:attribute`` into an object.

Recipes, the command line's ``headrace run module:attribute`` and the process
executor's workers all import through :func:`import_object`.
``mypkg.text:clean`` imports the module ``mypkg.text`` and takes its attribute
``clean``; nothing else is imported or run. With ``allow`` (``--allow mypkg``),
only modules under those prefixes may be imported at all. A path whose parts
start with ``_`` is refused (unless the caller names its own code: a worker
importing the function it was sent), so a recipe cannot reach
``os:__builtins__`` or a module's private helpers.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import PipelineError

__all__ = ["allowed", "import_object", "import_path", "resolve"]

_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_PRIVATE_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def allowed(module: str, allow: Sequence[str] | None) -> bool:
    """Whether ``module`` is under one of the ``allow`` prefixes (any, without a list)."""
    if allow is None:
        return True
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allow)


def import_path(folder: Path) -> None:
    """Make modules in ``folder`` importable, *after* installed packages: a module
    there never shadows an installed one (a ``pyarrow/`` beside a recipe is not
    imported in place of pyarrow)."""
    where = str(folder.resolve())
    if where not in sys.path:
        sys.path.append(where)


def resolve(ref: str, *, allow: Sequence[str] | None) -> Any:
    """The object ``ref`` (``module.path:attribute``) names.

    Raises:
        PipelineError: a malformed path, a module outside ``allow``, or a module or
            attribute that cannot be found (the error says which).
    """
    module_name, colon, attribute = ref.partition(":")
    if not colon:
        raise PipelineError(
            f"{ref!r} is not an import path: write module.name:function (parts are "
            "letters, digits and _, not starting with _)"
        )
    return import_object(module_name, attribute, allow=allow)


def import_object(
    module_name: str, attribute: str, *, allow: Sequence[str] | None = None, private: bool = False
) -> Any:
    """The attribute ``attribute`` (dotted) of the module ``module_name``.

    Args:
        module_name: the module's dotted name.
        attribute: the attribute's dotted name in it.
        allow: module prefixes that may be imported (``None``: any).
        private: parts may start with ``_`` (the caller names its own code).

    Raises:
        PipelineError: a malformed name, a module outside ``allow``, or a module or
            attribute that cannot be found (the error says which).
    """
    ref = f"{module_name}:{attribute}"
    parts = module_name.split(".") + attribute.split(".")
    pattern = _PRIVATE_PART if private else _PART
    if not all(pattern.match(part) for part in parts):
        raise PipelineError(
            f"{ref!r} is not an import path: write module.name:function (parts are "
            "letters, digits and _, not starting with _)"
        )
    if not allowed(module_name, allow):
        assert allow is not None
        raise PipelineError(
            f"module {module_name!r} is not allowed here (--allow {' '.join(allow)})"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PipelineError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target
