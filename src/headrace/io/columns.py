"""Columns of tabular sinks (CSV, Parquet, SQL): names, types, and turning outputs into rows.

A tabular sink takes outputs that are flat records: a ``dict``, a pydantic model
or a dataclass. Its columns are given by the user or fixed by the first output
written, and stay fixed for the whole run (they are stored with the sink's
committed state, so a resume writes the same columns). A column has one of these
scalar types, or (Parquet) a nested one:

===================== ============================= ===================================
type                  takes                         stored as
===================== ============================= ===================================
``string``            ``str``                       text
``int64``             ``int`` (not ``bool``)        a 64-bit integer
``float64``           ``float`` or ``int``          a double
``bool``              ``bool``                      a boolean
``json``              anything JSON can encode      JSON text (lists, nested objects)
``decimal128(P, S)``  a ``Decimal`` that fits       a decimal (see column_types)
``timestamp[UNIT]``   a ``datetime``                a timestamp, with ``, tz=ZONE``
``binary``            ``bytes``                     bytes
``list<T>``           a list of T                   Parquet: a list column
``struct<a: T, ...>`` an object with those fields   Parquet: a struct column
===================== ============================= ===================================

The first output fixes the types: from its class's annotations where it
declares them (a pydantic model or a dataclass, or the fields
:func:`~headrace.with_input` added from one), so ``keywords: list[str]`` is a
``list<string>`` column in Parquet (``json`` in CSV and SQL); otherwise from
its values (a list or an object is ``json``). See
:mod:`headrace.io.column_types`.

Any column may be empty (``None``, or a field the output lacks). A value of the
wrong type, or a field that is not a column, makes that item a dead letter of
the sink (step ``<sink>``) with a message naming the field; nothing else is
written differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..values.fields import fields_of
from . import column_types
from .records import decode_json, encode_json

__all__ = ["COLUMN_TYPES", "ColumnType", "Columns", "as_record", "declared_field_types"]

ColumnType = Literal["string", "int64", "float64", "bool", "json"]
"""The scalar column types (what a SQL table's columns are read back as)."""
COLUMN_TYPES: tuple[ColumnType, ...] = ("string", "int64", "float64", "bool", "json")


def as_record(value: Any) -> dict[str, Any]:
    """An output as a flat ``dict`` of fields (:func:`~headrace.values.fields.fields_of`: a
    string is one ``text`` column).

    Raises:
        TypeError: the output is not a mapping, a pydantic model, a dataclass or a string.
    """
    try:
        return fields_of(value)
    except TypeError:
        raise TypeError(
            f"a tabular sink takes records (a dict, a pydantic model, a dataclass or a "
            f"string), got {type(value).__name__}"
        ) from None


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str) or value is None:
        return "string"
    return "json"


def declared_field_types(value: Any) -> dict[str, Any]:
    """The annotations an output declares for its fields: its class's (a pydantic model,
    a dataclass), or those a :class:`TypedRecord` carries."""
    carried = getattr(value, "field_types", None)
    if isinstance(carried, dict):
        return carried
    return column_types.declared_types(type(value))


def _declared_type(declared: Any) -> str:
    """A declared field's column type: an annotation's, or a column type's own text (as
    a Parquet source declares ``decimal128(10, 2)``)."""
    if isinstance(declared, str):
        try:
            return column_types.check_type(declared)
        except ValueError:
            return "json"
    return column_types.type_of_annotation(declared)


class TypedRecord(dict[str, Any]):
    """A record that knows the types of some of its fields (``field_types``: name -> a
    Python annotation, or a column type's text), so that a Parquet sink writes
    ``keywords: list[str]`` as a ``list<string>`` column, and a Parquet source's
    ``decimal128(10, 2)`` column as that again. A plain ``dict`` in every other way."""

    field_types: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field_types = {}

    def __reduce__(self) -> Any:
        return (_typed_record, (dict(self), self.field_types))


def _typed_record(fields: dict[str, Any], field_types: dict[str, Any]) -> TypedRecord:
    record = TypedRecord(fields)
    record.field_types = field_types
    return record


class Columns:
    """The fixed columns of one tabular sink, and how each output becomes a row.

    Args:
        given: the columns the user asked for (name -> type), or ``None`` to fix
            them from the first output.
        key_column: a column that holds the item's key (SQL sinks), or ``None``.
        nested: the sink stores ``list<...>`` and ``struct<...>`` columns natively
            (Parquet); other sinks infer ``json`` for them and refuse them given.
    """

    def __init__(
        self,
        given: Mapping[str, str] | None,
        *,
        key_column: str | None = None,
        nested: bool = False,
    ) -> None:
        self.key_column = key_column
        self.nested = nested
        self.types: dict[str, str] | None = None
        self._trees: dict[str, Any] = {}
        self._native: list[str] = []  # the columns of native Arrow types
        if given is not None:
            self.fix(dict(given))

    def fix(self, types: Mapping[str, str]) -> None:
        """Fix the columns (from the user, the stored state, or an existing table).

        Raises:
            ValueError: an unknown column type, or no columns at all.
        """
        if not types:
            raise ValueError("a tabular sink needs at least one column")
        fixed: dict[str, str] = {}
        for name, kind in types.items():
            try:
                fixed[name] = column_types.check_type(str(kind))
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from None
            if column_types.nested(fixed[name]) and not self.nested:
                raise ValueError(
                    f"column {name!r}: {fixed[name]} columns are for Parquet; this sink "
                    "stores nested values as json"
                )
        if self.key_column is not None:
            fixed = {self.key_column: "string", **fixed}
            if fixed[self.key_column] != "string":
                raise ValueError(f"the key column {self.key_column!r} must be of type string")
        self.types = fixed
        self._trees = {name: column_types.parse(kind) for name, kind in fixed.items()}
        self._native = [n for n, t in self._trees.items() if column_types.family(t) is not None]

    @property
    def names(self) -> list[str]:
        """Column names in order (empty until fixed)."""
        return list(self.types or ())

    def state(self) -> list[list[str]]:
        """The columns as stored with the sink's committed state: ``[name, type]``
        pairs, so their order survives any JSON store (a dict's would not)."""
        return [[name, kind] for name, kind in (self.types or {}).items()]

    @classmethod
    def restored(
        cls, state: Any, given: Mapping[str, str] | None, *, nested: bool = False
    ) -> Columns:
        """The columns of a committed state (pairs; a dict from older runs), else ``given``.

        Raises:
            ValueError: the stored columns are not pairs of strings.
        """
        if not state:
            return cls(given, nested=nested)
        if isinstance(state, dict):
            return cls(state, nested=nested)
        if not isinstance(state, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in state
        ):
            raise ValueError("the run store's sink columns are damaged (not [name, type] pairs)")
        return cls(dict((name, kind) for name, kind in state), nested=nested)

    def row(self, key: str, value: Any) -> list[Any]:
        """The output ``value`` of the item ``key`` as one row, in column order.

        The first output fixes the columns when none were given.

        Raises:
            TypeError: the output is not a record.
            ValueError: a field is not a column, or has the wrong type.
        """
        # as JSON sees it: numpy numbers, datetimes, UUIDs, nested models become plain values
        fields = as_record(value)
        record = decode_json(encode_json(fields))
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
            self.fix(self._inferred(value, record, fields))
            types = self.types
            assert types is not None
        for name in self._native:  # a Decimal, a datetime, bytes: kept as they are, not text
            if name in fields and name != key_column:
                record[name] = fields[name]
        extra = record.keys() - types.keys()
        if extra:
            raise ValueError(
                f"field {sorted(extra)[0]!r} is not a column (columns: {', '.join(types)})"
            )
        trees, encode = self._trees, encode_json
        return [column_types.coerce(name, trees[name], record.get(name), encode) for name in types]

    def _inferred(
        self, value: Any, record: dict[str, Any], fields: dict[str, Any]
    ) -> dict[str, str]:
        """Column types for the first output: declared where its class (or its source)
        says, else by value (``fields``: before JSON made text of a Decimal or a date)."""
        declared = declared_field_types(value)
        found: dict[str, str] = {}
        for name, field_value in record.items():
            kind = column_types.native_type_of(fields.get(name)) or _type_of(field_value)
            # a declared type where it says more than the value (a list<...>, an int
            # field whose first value is None); "json" (a datetime, a dict) says less
            said = _declared_type(declared[name]) if name in declared else "json"
            if said != "json" and (self.nested or not column_types.nested(said)):
                kind = said
            found[name] = kind
        return found
