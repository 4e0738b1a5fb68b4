"""Parquet: a source read by row group, and a sink of part files, exactly once per item."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..loading.extras import require
from .column_types import arrow_type, parse
from .columns import Columns, TypedRecord
from .parts import PartDirectorySink
from .records import BadRecord, Source, refuse_special_file

__all__ = ["ParquetSink", "ParquetSource", "read_parquet", "write_parquet"]


class ParquetSource(Source):
    """Reads a Parquet file a slice of a row group at a time; see :func:`read_parquet`."""

    requires: tuple[str, ...] = ("pyarrow",)

    def __init__(
        self, path: str | os.PathLike[str], key: str | None, columns: list[str] | None
    ) -> None:
        _pyarrow()
        self.path = Path(path)
        self.key = key
        self.columns = list(columns) if columns is not None else None
        self._native: dict[str, str] = {}  # the columns JSON has no type for (see below)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "parquet",
            "path": str(self.path.resolve()),
            "key": self.key,
            "columns": self.columns,
        }

    def _file(self) -> Any:
        _, pq = _pyarrow()
        refuse_special_file(self.path, "source")
        if not self.path.is_file():
            raise FileNotFoundError(f"cannot read {self.path}: No such file")
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... for a bad file
            raise ValueError(f"{self.path}: not a Parquet file ({exc})") from exc

    def check(self) -> None:
        """Refuse a file that is missing or not Parquet, or a key that is not a column."""
        names = self._file().schema_arrow.names
        for wanted in [self.key] if self.key is not None else []:
            if wanted not in names:
                raise ValueError(
                    f"{self.path}: no key column {wanted!r} (columns: {', '.join(names)})"
                )

    def count(self) -> int:
        """The number of rows (from the file's footer)."""
        return int(self._file().metadata.num_rows)

    def _batches(self, parquet: Any, group: int, columns: list[str] | None) -> Iterator[Any]:
        """The batches of row group ``group``; a damaged one is named, file and group."""
        batches = parquet.iter_batches(batch_size=1024, row_groups=[group], columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # pyarrow's ArrowInvalid, OSError ... for damaged data
                raise ValueError(
                    f"{self.path}: row group {group} of {parquet.num_row_groups} cannot be "
                    f"read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                ) from None
            yield batch

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        return self.records_between(0, None)

    def records_between(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The rows at positions ``start`` to ``stop`` (excluded; ``None``: to the end),
        counted from 0 across the row groups. Row groups wholly before ``start`` or
        from ``stop`` on are never read (their sizes are in the footer), so a
        worker's shard of a large file reads only the row groups it overlaps."""
        parquet = self._file()
        columns = self.columns
        if columns is not None and self.key is not None and self.key not in columns:
            columns = [*columns, self.key]
        self._native = _native_columns(parquet.schema_arrow, columns)
        first = 0  # the position of the current row group's first row
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if stop is not None and first >= stop:
                return
            if first + size <= start:
                first += size
                continue
            row = 0
            for batch in self._batches(parquet, group, columns):
                if stop is not None and first + row >= stop:
                    return
                low = max(0, start - first - row)
                high = batch.num_rows if stop is None else min(batch.num_rows, stop - first - row)
                if low < high:
                    # rows outside the range are sliced off before they become Python objects
                    chosen = batch.slice(low, high - low).to_pylist()
                    yield from self._keyed(chosen, group, row + low)
                row += batch.num_rows
            first += size

    def _keyed(
        self, values: list[Any], group: int, row: int
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """Each row with its key; ``row`` is the first one's row in row group ``group``."""
        native = self._native
        for value in values:
            if native:  # its decimal, timestamp and binary columns go to a sink as they are
                value = TypedRecord(value)
                value.field_types = native
            if self.key is None:
                yield f"row_group:{group}:{row}", value
            elif value.get(self.key) is None:
                yield BadRecord(
                    f"{self.path} row group {group} row {row}",
                    f"the key column {self.key!r} is empty",
                    repr(value)[:200],
                )
            else:
                yield str(value[self.key]), value
            row += 1


def _native_columns(schema: Any, columns: list[str] | None) -> dict[str, str]:
    """The columns of Arrow types that JSON has no type for, as column types' text."""
    pa, _ = _pyarrow()
    found = {}
    for field in schema:
        if columns is not None and field.name not in columns:
            continue
        kind = field.type
        if pa.types.is_decimal128(kind):
            found[field.name] = f"decimal128({kind.precision}, {kind.scale})"
        elif pa.types.is_timestamp(kind):
            zone = f", tz={kind.tz}" if kind.tz else ""
            found[field.name] = f"timestamp[{kind.unit}{zone}]"
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            found[field.name] = "binary"
    return found


def read_parquet(
    path: str | os.PathLike[str], *, key: str | None = None, columns: list[str] | None = None
) -> ParquetSource:
    """Read a Parquet file lazily, 1024 rows at a time within each row group.

    Args:
        path: the file.
        key: the column that identifies each row; default: its row group and row.
        columns: read only these columns (default: all).

    Memory stays at one slice of 1024 rows, however large the row groups. A file
    that is missing or not Parquet is refused before anything runs; a row whose
    key is empty is a :class:`BadRecord` naming the row group and row.
    """
    return ParquetSource(path, key, columns)


class ParquetSink(PartDirectorySink):
    """``part-00000.parquet``, ...: one Parquet file per commit; see :func:`write_parquet`."""

    kind = "parquet"
    requires: tuple[str, ...] = ("pyarrow",)
    prefix = "part-"
    suffix = ".parquet"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        items_per_file: int = 10_000,
        columns: dict[str, str] | None = None,
    ) -> None:
        super().__init__(directory, items_per_file)
        _pyarrow()  # refuse early, with how to install it
        self.given = dict(columns) if columns is not None else None
        self.columns = Columns(self.given, nested=True)

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {**super().describe(), "columns": self.given}

    def encode(self, key: str, value: Any) -> list[Any]:
        """The output as one row of the fixed columns."""
        return self.columns.row(key, value)

    def state(self) -> dict[str, Any]:
        """The committed parts and the columns they were written with."""
        return {**super().state(), "columns": self.columns.state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Write the columns of the committed parts again."""
        self.columns = Columns.restored(state.get("columns"), self.given, nested=True)

    def write_part(self, path: Path, records: list[list[Any]]) -> None:
        """One Parquet file (one row group) with the fixed columns' types."""
        pa, pq = _pyarrow()
        types = self.columns.types or {}
        arrays = [
            pa.array([row[i] for row in records], type=arrow_type(parse(kind)))
            for i, kind in enumerate(types.values())
        ]
        table = pa.Table.from_arrays(arrays, names=list(types))
        pq.write_table(table, path)

    def read_part(self, path: Path) -> list[Any]:
        """The part's rows, as records."""
        _, pq = _pyarrow()
        rows: list[Any] = pq.read_table(path).to_pylist()
        return rows

    def filter_part(self, path: Path, target: Path, keep: list[bool]) -> None:
        """The part's rows that ``keep`` marks, with the part's own schema."""
        pa, pq = _pyarrow()
        table = pq.read_table(path)
        pq.write_table(table.filter(pa.array(keep, type=pa.bool_())), target)


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow, or :class:`~headrace.errors.MissingExtra` naming the extra."""
    require({"Parquet": ("pyarrow",)})
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def write_parquet(
    directory: str | os.PathLike[str],
    *,
    columns: dict[str, str] | None = None,
    items_per_file: int = 10_000,
) -> ParquetSink:
    """Write outputs as a directory of Parquet files, exactly once per item.

    Args:
        directory: where ``part-NNNNN.parquet`` files go (a dataset that pyarrow,
            pandas, Polars, DuckDB and Spark read as one table).
        columns: column name -> type (``string``, ``int64``, ``float64``, ``bool``,
            ``json``, ``list<T>``, ``struct<a: T, ...>``); default: fixed by the first
            output, from its declared annotations where it has them (a pydantic
            model's ``keywords: list[str]`` is ``list<string>``), else from its values
            (see :mod:`headrace.io.columns`).
        items_per_file: commit a part after this many finished items (or 2 s).
    """
    return ParquetSink(directory, items_per_file, columns)
