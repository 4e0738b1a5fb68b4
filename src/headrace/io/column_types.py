"""Column types, nested ones included: ``list<string>``, ``struct<name: string, n: int64>``.

A column type is text, so that it is stored with a sink's committed state and
given in recipes: one of the scalars ``string``, ``int64``, ``float64``,
``bool``, ``json``, or ``list<T>`` of any type, or ``struct<a: T, b: U>``.
Parquet stores nested types natively (pandas, Polars, DuckDB and Ray read
``list<string>`` as lists); CSV and SQL sinks, which have no such columns, store
them as JSON text.

:func:`type_of_annotation` reads a type from a Python annotation (a Pydantic
field's, a dataclass's): ``list[str]`` is ``list<string>``, a nested model is a
``struct``, ``Optional[X]`` is X (every column may be empty), and anything
else (``dict``, ``Any``, unions) is ``json``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["SCALARS", "arrow_type", "check_type", "coerce", "parse", "type_of_annotation"]

SCALARS = ("string", "int64", "float64", "bool", "json")
_INT64 = (-(2**63), 2**63 - 1)
_MAX_DEPTH = 8


def parse(text: str) -> Any:
    """A type's text as a tree: a scalar's name, ``("list", T)`` or ``("struct", {name: T})``.

    Raises:
        ValueError: not a column type.
    """
    try:
        tree, rest = _parse(text.strip(), 0)
        if rest.strip():
            raise ValueError(f"{rest.strip()!r} after the type")
    except ValueError as exc:
        raise ValueError(
            f"unknown column type {text!r}: {exc} (one of {', '.join(SCALARS)}, "
            "list<T>, struct<name: T, ...>)"
        ) from None
    return tree


def _parse(text: str, depth: int) -> tuple[Any, str]:
    if depth > _MAX_DEPTH:
        raise ValueError("a column type nested more than 8 deep")
    for scalar in SCALARS:
        if text.startswith(scalar) and not text[len(scalar) : len(scalar) + 1].isalnum():
            return scalar, text[len(scalar) :]
    if text.startswith("list<"):
        inner, rest = _parse(text[5:].lstrip(), depth + 1)
        rest = rest.lstrip()
        if not rest.startswith(">"):
            raise ValueError("a list<...> is not closed")
        return ("list", inner), rest[1:]
    if text.startswith("struct<"):
        fields: dict[str, Any] = {}
        rest = text[7:]
        while True:
            rest = rest.lstrip()
            name, colon, rest = rest.partition(":")
            name = name.strip()
            if not colon or not name.isidentifier() or name in fields:
                raise ValueError("struct fields are distinct names, each with ': type'")
            fields[name], rest = _parse(rest.lstrip(), depth + 1)
            rest = rest.lstrip()
            if rest.startswith(">"):
                return ("struct", fields), rest[1:]
            if not rest.startswith(","):
                raise ValueError("a struct<...> is not closed")
            rest = rest[1:]
    raise ValueError(f"no type at {text[:20]!r}")


def check_type(text: str) -> str:
    """``text`` if it is a column type, normalised (``list< string >`` -> ``list<string>``).

    Raises:
        ValueError: it is not.
    """
    return render(parse(text))


def render(tree: Any) -> str:
    """A type tree as text."""
    if isinstance(tree, str):
        return tree
    kind, inner = tree
    if kind == "list":
        return f"list<{render(inner)}>"
    return "struct<" + ", ".join(f"{n}: {render(t)}" for n, t in inner.items()) + ">"


def nested(text: str) -> bool:
    """Whether a column type is a list or struct."""
    return text.startswith(("list<", "struct<"))


def coerce(name: str, tree: Any, value: Any, encode: Any) -> Any:
    """``value`` as a column of type ``tree`` stores it (JSON text for ``json``).

    Raises:
        ValueError: it does not fit, naming the field (``keywords[2]``, ``author.name``).
    """
    if value is None:
        return None
    if tree == "json":
        return encode(value).decode()
    if isinstance(tree, tuple):
        kind, inner = tree
        if kind == "list":
            if not isinstance(value, list | tuple):
                _refuse(name, "a list", value)
            return [coerce(f"{name}[{i}]", inner, v, encode) for i, v in enumerate(value)]
        if not isinstance(value, Mapping):
            _refuse(name, "an object", value)
        extra = sorted(set(value) - set(inner))
        if extra:
            raise ValueError(f"field '{name}.{extra[0]}' is not in the struct column {name!r}")
        return {n: coerce(f"{name}.{n}", t, value.get(n), encode) for n, t in inner.items()}
    ok = False
    if tree == "string":
        ok = isinstance(value, str)
    elif tree == "bool":
        ok = isinstance(value, bool)
    elif tree == "int64":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"field {name!r}: {value} does not fit in int64")
    elif tree == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    if not ok:
        _refuse(name, tree, value)
    return value


def _refuse(name: str, expected: str, value: Any) -> typing.NoReturn:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "…"
    raise ValueError(f"field {name!r}: expected {expected}, got {type(value).__name__} {shown}")


def arrow_type(tree: Any) -> Any:
    """The pyarrow type of a type tree."""
    import pyarrow as pa

    if isinstance(tree, tuple):
        kind, inner = tree
        if kind == "list":
            return pa.list_(arrow_type(inner))
        return pa.struct([(n, arrow_type(t)) for n, t in inner.items()])
    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "json": pa.string(),
    }[tree]


def type_of_annotation(annotation: Any, depth: int = 0) -> str:
    """The column type of a Python annotation (see the module's notes)."""
    if depth > _MAX_DEPTH:
        return "json"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_of_annotation(args[0], depth)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        return type_of_annotation(present[0], depth) if len(present) == 1 else "json"
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        return type_of_annotation(kinds.pop(), depth) if len(kinds) == 1 else "json"
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return "json"
        inner = type_of_annotation(args[0], depth + 1) if args else "json"
        return "json" if inner == "json" else f"list<{inner}>"
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, enum.Enum):
            values = {type(m.value) for m in annotation}
            return type_of_annotation(values.pop(), depth) if len(values) == 1 else "json"
        for kind, name in ((str, "string"), (int, "int64"), (float, "float64")):
            if issubclass(annotation, kind):
                return name
        fields = declared_types(annotation)
        if fields:
            inner_types = [f"{n}: {type_of_annotation(t, depth + 1)}" for n, t in fields.items()]
            if all(n.isidentifier() for n in fields):
                return "struct<" + ", ".join(inner_types) + ">"
    return "json"


def declared_types(kind: Any) -> dict[str, Any]:
    """A Pydantic model's or dataclass's field annotations (empty for anything else)."""
    if not isinstance(kind, type):
        return {}
    model_fields = getattr(kind, "model_fields", None)
    if isinstance(model_fields, dict):
        return {name: info.annotation for name, info in model_fields.items()}
    if dataclasses.is_dataclass(kind):
        try:
            hints = typing.get_type_hints(kind)
        except Exception:  # an unresolvable annotation declares nothing
            return {}
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(kind)}
    return {}
