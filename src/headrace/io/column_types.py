"""Column types, nested ones included: ``list<string>``, ``struct<name: string, n: int64>``.

A column type is text, so that it is stored with a sink's committed state and
given in recipes: one of the scalars ``string``, ``int64``, ``float64``,
``bool``, ``json``, the Arrow types ``decimal128(P, S)``, ``timestamp[UNIT]``
or ``timestamp[UNIT, tz=ZONE]`` (UNIT one of s, ms, us, ns) and ``binary``, or
``list<T>`` of any type, or ``struct<a: T, b: U>``. The Arrow types are stored
natively by Parquet (and SQL: ``NUMERIC``, ``TIMESTAMP``, ``BYTEA``/``BLOB``);
CSV writes a decimal as its digits, a timestamp in ISO 8601 and bytes in
base64, as JSON does.
Parquet stores nested types natively (pandas, Polars, DuckDB and Ray read
``list<string>`` as lists); CSV and SQL sinks, which have no such columns, store
them as JSON text.

:func:`type_of_annotation` reads a type from a Python annotation (a Pydantic
field's, a dataclass's): ``list[str]`` is ``list<string>``, a nested model is a
``struct``, ``Optional[X]`` is X (every column may be empty), and anything
else (``dict``, ``Any``, unions) is ``json``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SCALARS",
    "arrow_type",
    "check_type",
    "coerce",
    "family",
    "native_type_of",
    "parse",
    "text_cell",
    "type_of_annotation",
]

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


# the Arrow types carried natively: (family, pattern); a match is one scalar's text
_NATIVE = (
    ("decimal", re.compile(r"decimal128\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)")),
    ("timestamp", re.compile(r"timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]\s]+)\s*)?\]")),
    ("binary", re.compile(r"binary(?![A-Za-z0-9_])")),
)


def _native(text: str) -> tuple[str, str] | None:
    """A native Arrow type at the start of ``text``: its normalised text, and the rest."""
    for kind, pattern in _NATIVE:
        found = pattern.match(text)
        if found is None:
            continue
        if kind == "decimal":
            precision, scale = int(found[1]), int(found[2])
            if not 1 <= precision <= 38 or scale > precision:
                raise ValueError("decimal128(P, S) needs 1 <= P <= 38 and S <= P")
            name = f"decimal128({precision}, {scale})"
        elif kind == "timestamp":
            name = f"timestamp[{found[1]}" + (f", tz={found[2]}]" if found[2] else "]")
        else:
            name = "binary"
        return name, text[found.end() :]
    return None


def family(tree: Any) -> str | None:
    """``"decimal"``, ``"timestamp"`` or ``"binary"`` for a native Arrow type, else ``None``."""
    if isinstance(tree, str):
        for kind, _ in _NATIVE:
            if tree.startswith(kind if kind != "decimal" else "decimal128("):
                return kind
    return None


def _parse(text: str, depth: int) -> tuple[Any, str]:
    if depth > _MAX_DEPTH:
        raise ValueError("a column type nested more than 8 deep")
    native = _native(text)
    if native is not None:
        return native
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
    kind = family(tree)
    if kind is not None:
        return _coerce_native(name, kind, tree, value)
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


def _coerce_native(name: str, kind: str, tree: str, value: Any) -> Any:
    """A value for a native Arrow column: a ``Decimal`` that fits, a ``datetime``, bytes;
    or the text JSON made of one (digits, ISO 8601, base64)."""
    if kind == "decimal":
        try:
            number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
        except (decimal.InvalidOperation, ValueError):
            _refuse(name, tree, value)
        if isinstance(value, bool) or not number.is_finite():
            _refuse(name, tree, value)
        precision, scale = _decimal_args(tree)
        exponent = number.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        digits = len(number.as_tuple().digits) - places
        if places > scale or max(digits, 0) > precision - scale:
            raise ValueError(f"field {name!r}: {number} does not fit in {tree}")
        return number
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # not ISO 8601: refused below
                return dt.datetime.fromisoformat(value)
        _refuse(name, tree, value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        with contextlib.suppress(binascii.Error, ValueError):  # not base64: refused below
            return base64.b64decode(value, validate=True)
    _refuse(name, tree, value)


def _decimal_args(tree: str) -> tuple[int, int]:
    precision, _, scale = tree[len("decimal128(") : -1].partition(",")
    return int(precision), int(scale)


def native_type_of(value: Any) -> str | None:
    """The native Arrow column type a Python value asks for (``Decimal``, ``datetime``,
    bytes), or ``None``: a decimal gets precision 38 and at least 9 places, a timestamp
    microseconds (nanoseconds for a pandas ``Timestamp``) and its zone if it has one."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return f"decimal128(38, {min(max(places, 9), 38)})"
    if isinstance(value, dt.datetime):
        unit = "ns" if hasattr(value, "nanosecond") else "us"
        zone = _zone_name(value.tzinfo, value)
        return f"timestamp[{unit}" + (f", tz={zone}]" if zone else "]")
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    return None


def _zone_name(zone: Any, at: dt.datetime) -> str | None:
    if zone is None:
        return None
    named = getattr(zone, "key", None) or getattr(zone, "zone", None)  # zoneinfo, pytz
    if isinstance(named, str):
        return named
    offset = zone.utcoffset(at)
    if offset is None:
        return None
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def text_cell(value: Any) -> Any:
    """A cell as CSV writes it: a timestamp in ISO 8601, bytes in base64, others as is."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
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
    kind = family(tree)
    if kind == "decimal":
        precision, scale = _decimal_args(tree)
        return pa.decimal128(precision, scale)
    if kind == "timestamp":
        unit, _, zone = tree[len("timestamp[") : -1].partition(", tz=")
        return pa.timestamp(unit, tz=zone or None)
    if kind == "binary":
        return pa.binary()
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
