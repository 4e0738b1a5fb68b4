"""Columns of tabular sinks (CSV, Parquet, SQL): names, types, and turning outputs into rows.

A tabular sink takes outputs that are flat records: a ``dict``, a pydantic model
or a dataclass. Its columns are given by the user or fixed by the first output
written, and stay fixed for the whole run (they are stored with the sink's
committed state, so a resume writes the same columns). A column has one of five
types:

========== ============================== ===================================
type       takes                          stored as
========== ============================== ===================================
``string`` ``str``                        text
``int64``  ``int`` (not ``bool``)         a 64-bit integer
``float64````float`` or ``int``           a double
``bool``   ``bool``                       a boolean
``json``   anything JSON can encode       JSON text (lists, nested objects)
========== ============================== ===================================

Any column may be empty (``None``, or a field the output lacks). A value of the
wrong type, or a field that is not a column, makes that item a dead letter of
the sink (step ``<sink>``) with a message naming the field; nothing else is
written differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from .records import decode_json, encode_json

__all__ = ["COLUMN_TYPES", "ColumnType", "Columns", "as_record"]

ColumnType = Literal["string", "int64", "float64", "bool", "json"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("string", "int64", "float64", "bool", "json")


def as_record(value: Any) -> dict[str, Any]:
    """An output as a flat ``dict`` of fields.

    Raises:
        TypeError: the output is not a mapping, a pydantic model or a dataclass.
    """
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(
        f"a tabular sink takes records (a dict, a pydantic model or a dataclass), "
        f"got {type(value).__name__}"
    )


def _type_of(value: Any) -> ColumnType:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str) or value is None:
        return "string"
    return "json"


_INT64 = (-(2**63), 2**63 - 1)


def _coerce(name: str, kind: ColumnType, value: Any) -> Any:
    """``value`` as column ``name`` of type ``kind`` stores it; raise ValueError if it cannot."""
    if value is None:
        return None
    if kind == "json":
        return encode_json(value).decode()
    ok = False
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int64":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"field {name!r}: {value} does not fit in int64")
    elif kind == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:60] + "…"
        raise ValueError(f"field {name!r}: expected {kind}, got {type(value).__name__} {shown}")
    return value


class Columns:
    """The fixed columns of one tabular sink, and how each output becomes a row.

    Args:
        given: the columns the user asked for (name -> type), or ``None`` to fix
            them from the first output.
        key_column: a column that holds the item's key (SQL sinks), or ``None``.
    """

    def __init__(self, given: Mapping[str, str] | None, *, key_column: str | None = None) -> None:
        self.key_column = key_column
        self.types: dict[str, ColumnType] | None = None
        if given is not None:
            self.fix(dict(given))

    def fix(self, types: Mapping[str, str]) -> None:
        """Fix the columns (from the user, the stored state, or an existing table).

        Raises:
            ValueError: an unknown column type, or no columns at all.
        """
        if not types:
            raise ValueError("a tabular sink needs at least one column")
        for name, kind in types.items():
            if kind not in COLUMN_TYPES:
                raise ValueError(
                    f"column {name!r}: unknown type {kind!r} (one of {', '.join(COLUMN_TYPES)})"
                )
        fixed: dict[str, ColumnType] = {n: k for n, k in types.items()}  # type: ignore[misc]
        if self.key_column is not None:
            fixed = {self.key_column: "string", **fixed}
            if fixed[self.key_column] != "string":
                raise ValueError(f"the key column {self.key_column!r} must be of type string")
        self.types = fixed

    @property
    def names(self) -> list[str]:
        """Column names in order (empty until fixed)."""
        return list(self.types or ())

    def state(self) -> list[list[str]]:
        """The columns as stored with the sink's committed state: ``[name, type]``
        pairs, so their order survives any JSON store (a dict's would not)."""
        return [[name, kind] for name, kind in (self.types or {}).items()]

    @classmethod
    def restored(cls, state: Any, given: Mapping[str, str] | None) -> Columns:
        """The columns of a committed state (pairs; a dict from older runs), else ``given``.

        Raises:
            ValueError: the stored columns are not pairs of strings.
        """
        if not state:
            return cls(given)
        if isinstance(state, dict):
            return cls(state)
        if not isinstance(state, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in state
        ):
            raise ValueError("the run store's sink columns are damaged (not [name, type] pairs)")
        return cls(dict((name, kind) for name, kind in state))

    def row(self, key: str, value: Any) -> list[Any]:
        """The output ``value`` of the item ``key`` as one row, in column order.

        The first output fixes the columns when none were given.

        Raises:
            TypeError: the output is not a record.
            ValueError: a field is not a column, or has the wrong type.
        """
        # as JSON sees it: numpy numbers, datetimes, UUIDs, nested models become plain values
        record = decode_json(encode_json(as_record(value)))
        key_column = self.key_column
        if key_column is not None:
            given = record.get(key_column)
            if given is not None and str(given) != key:
                raise ValueError(
                    f"field {key_column!r} is {given!r} but the item's key is {key!r}; "
                    "the key column holds the item's key"
                )
            record[key_column] = key
        types = self.types
        if types is None:
            self.fix({name: _type_of(v) for name, v in record.items()})
            types = self.types
            assert types is not None
        extra = record.keys() - types.keys()
        if extra:
            raise ValueError(
                f"field {sorted(extra)[0]!r} is not a column (columns: {', '.join(types)})"
            )
        return [_coerce(name, kind, record.get(name)) for name, kind in types.items()]
