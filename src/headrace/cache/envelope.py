"""Cached values: outputs in a typed JSON envelope, never pickles.

A Pydantic output comes back as the same model, a dataclass as the same
dataclass, a tuple as a tuple, a numpy array as an array.

An entry may have been written by someone else (a shared Redis, a copied cache
file), so it is data, never code: a class named in an entry is rebuilt only if
it is one of the :class:`Declared` types of the step reading it (its return
annotation, or ``Cache(types=...)``), and only through validation (pydantic's
``model_validate``, or a ``TypeAdapter`` over a dataclass's fields). Any other
class name makes the entry unreadable, which the gate counts as a miss.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

import orjson

from .._types import FILTERED
from ..errors import EncodeError

__all__ = ["Declared", "EncodeError", "decode", "encode"]


class Declared:
    """The classes a cached step may get back: found in its declared output type.

    Pydantic models and dataclasses are collected from ``annotation`` (through
    ``list[...]``, ``X | None``, ``dict[str, X]`` and the like, and through a
    dataclass's own fields), plus ``extra`` (``Cache(types=...)``).
    """

    def __init__(self, annotation: Any = None, extra: Iterable[type] = ()) -> None:
        self.classes: dict[str, type] = {}
        pending: list[Any] = [annotation, *extra]
        seen: set[int] = set()
        while pending:
            kind = pending.pop()
            if kind is None or id(kind) in seen:
                continue
            seen.add(id(kind))
            pending.extend(typing.get_args(kind))
            if not isinstance(kind, type) or isinstance(kind, types.GenericAlias):
                continue
            if callable(getattr(kind, "model_validate", None)):
                self.classes[_path_of(kind)] = kind
            elif dataclasses.is_dataclass(kind):
                self.classes[_path_of(kind)] = kind
                # unresolvable field types: the class alone is declared
                with contextlib.suppress(Exception):
                    pending.extend(typing.get_type_hints(kind).values())

    def __contains__(self, kind: type) -> bool:
        return self.classes.get(_path_of(kind)) is kind

    def rebuild(self, path: Any, fields: Any, *, model: bool) -> Any:
        """An instance of the declared class ``path``, validated from ``fields``.

        Raises:
            LookupError: ``path`` is not a declared class of this kind.
            ValueError: the fields do not validate.
        """
        kind = self.classes.get(path) if isinstance(path, str) else None
        if kind is None and isinstance(path, str):  # an entry named the older way
            kind = next((k for k in self.classes.values() if _legacy_path(k) == path), None)
        if kind is None or model != callable(getattr(kind, "model_validate", None)):
            raise LookupError(f"{path!r} is not a type this step declared")
        if model:
            return kind.model_validate(fields)  # type: ignore[attr-defined]
        if not isinstance(fields, dict):
            raise ValueError("a dataclass entry without fields")
        from pydantic import TypeAdapter

        return TypeAdapter(kind).validate_python(fields)


def _path_of(kind: type) -> str:
    """A class's name in an entry: its qualified name and field names, never its module,
    so that ``python enrich.py`` (module ``__main__``) and ``headrace run enrich:...``
    (module ``enrich``) read each other's entries. Validation decides the rest."""
    fields = getattr(kind, "model_fields", None)
    if isinstance(fields, dict):
        names = list(fields)
    elif dataclasses.is_dataclass(kind):
        names = [field.name for field in dataclasses.fields(kind)]
    else:
        names = []
    return f"{kind.__qualname__}({','.join(names)})"


def _legacy_path(kind: type) -> str:
    return f"{kind.__module__}:{kind.__qualname__}"


def encode(value: Any, declared: Declared) -> bytes:
    """``value`` as envelope bytes.

    Raises:
        EncodeError: the value (or a part of it) has no JSON form, or is of a class
            the step did not declare (it could not be read back).
    """
    try:
        return orjson.dumps(_wrap(value, declared))
    except TypeError as exc:
        raise EncodeError(str(exc)) from None


def _wrap(value: Any, declared: Declared) -> Any:
    if value is FILTERED:
        return {"t": "filtered"}
    if value is None or isinstance(value, bool | int | float | str):
        return {"t": "json", "v": value}
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_wrap(v, declared) for v in value]}
    if isinstance(value, list):
        return {"t": "list", "v": [_wrap(v, declared) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        return {"t": "dict", "v": {k: _wrap(v, declared) for k, v in value.items()}}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": base64.b64encode(value).decode()}
    kind = type(value)
    path = _path_of(kind)
    is_model = callable(getattr(value, "model_dump", None))
    is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if (is_model or is_dataclass) and kind not in declared:
        raise TypeError(
            f"a {kind.__name__} ({path}) is not the step's declared output type, so the cache "
            f"could not give it back: annotate the step's return type, or Cache(types=[...])"
        )
    if is_model:
        return {"t": "model", "c": path, "v": value.model_dump(mode="json")}
    if is_dataclass:
        fields = {
            f.name: _wrap(getattr(value, f.name), declared) for f in dataclasses.fields(value)
        }
        return {"t": "dataclass", "c": path, "v": fields}
    if kind.__module__ == "numpy" and hasattr(value, "tobytes") and hasattr(value, "dtype"):
        data = base64.b64encode(value.tobytes()).decode()
        return {"t": "ndarray", "d": str(value.dtype), "s": list(value.shape), "v": data}
    raise TypeError(f"a {kind.__name__} ({path}) has no JSON form")


def decode(data: bytes, declared: Declared) -> Any:
    """Envelope bytes as the value they hold, rebuilding only ``declared`` classes.

    Raises:
        LookupError: the entry names a class the step did not declare, or numpy
            is not imported for an array.
        ValueError: the bytes are not an envelope, or its fields do not validate.
    """
    try:
        return _unwrap(orjson.loads(data), declared)
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not a cache envelope: {type(exc).__name__}") from None


_ARRAY_KINDS = frozenset("biufc?")  # numbers and booleans: never object arrays


def _unwrap(box: Any, declared: Declared) -> Any:
    tag = box["t"]
    if tag == "filtered":
        return FILTERED
    if tag == "json":
        value = box["v"]
        if value is not None and not isinstance(value, bool | int | float | str):
            raise ValueError("a json entry that is not a scalar")
        return value
    if tag == "tuple":
        return tuple(_unwrap(v, declared) for v in box["v"])
    if tag == "list":
        return [_unwrap(v, declared) for v in box["v"]]
    if tag == "dict":
        return {str(k): _unwrap(v, declared) for k, v in box["v"].items()}
    if tag == "bytes":
        return base64.b64decode(box["v"], validate=True)
    if tag == "model":
        return declared.rebuild(box["c"], box["v"], model=True)
    if tag == "dataclass":
        fields = {str(k): _unwrap(v, declared) for k, v in box["v"].items()}
        return declared.rebuild(box["c"], fields, model=False)
    if tag == "ndarray":
        numpy = sys.modules.get("numpy")
        if numpy is None:
            raise LookupError("a cached numpy array, and numpy is not imported")
        dtype = numpy.dtype(str(box["d"]))
        if dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"a cached array of dtype {dtype} is not read back")
        flat = numpy.frombuffer(base64.b64decode(box["v"], validate=True), dtype=dtype)
        return flat.reshape([int(n) for n in box["s"]]).copy()
    raise ValueError(f"not a cache envelope (tag {tag!r})")
