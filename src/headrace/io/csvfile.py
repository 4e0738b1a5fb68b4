"""CSV: a streaming source that names the line of a bad row, and a sink that resumes exactly once.

CSV has no types: the source yields every field as a string (convert in the
first step, or use Parquet); the sink writes ``None`` as an empty field and
``json`` columns as JSON text.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from .appending import AppendingFileSink
from .column_types import text_cell
from .columns import Columns
from .records import BadRecord, Source, refuse_special_file

__all__ = ["CsvSink", "CsvSource", "read_csv", "write_csv"]


class CsvSource(Source):
    """Reads a CSV file with a header row, one record at a time; see :func:`read_csv`."""

    def __init__(self, path: str | os.PathLike[str], key: str | None, delimiter: str) -> None:
        self.path = Path(path)
        self.key = key
        self.delimiter = delimiter

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "csv",
            "path": str(self.path.resolve()),
            "key": self.key,
            "delimiter": self.delimiter,
        }

    def check(self) -> None:
        """Refuse a file that cannot be read, is empty, or whose header lacks the key or
        names a column twice (a row would silently keep only the last of the two)."""
        with _open(self.path) as handle:
            header = next(csv.reader(handle, delimiter=self.delimiter), None)
        if not header:
            raise ValueError(f"{self.path}: empty file; a CSV source needs a header row")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(
                f"{self.path}:1: the header names column {repeated[0]!r} more than once"
            )
        bad = next((i for i, name in enumerate(header) if _SURROGATES.search(name)), None)
        if bad is not None:
            raise ValueError(f"{self.path}:1: column {bad + 1} of the header is not valid UTF-8")
        if self.key is not None and self.key not in header:
            raise ValueError(
                f"{self.path}:1: the header has no key column {self.key!r} "
                f"(columns: {', '.join(header)})"
            )

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        return self.records_between(0, None)

    def positions(self) -> int:
        """The number of records (rows that are not blank, bad ones included): a
        parse of the whole file, to split it across workers."""
        return sum(1 for _ in self._rows(None))

    def records_between(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The records at positions ``start`` to ``stop`` (excluded; ``None``: to the end),
        counted as :meth:`positions` counts them. The rows before ``start`` are parsed
        as CSV (a quoted field may hold a newline) but not checked or built."""
        rows = self._rows(stop)
        next(islice(rows, start, start), None)  # pass over the rows before the range
        for line, fields, header in rows:
            if isinstance(fields, BadRecord):
                yield fields
            else:
                yield from self._record(line, fields, header)

    def _rows(self, stop: int | None) -> Iterator[tuple[int, list[str] | BadRecord, list[str]]]:
        """Each record's first line and fields (or why it is not CSV), with the header."""
        with _open(self.path) as handle:
            reader = csv.reader(handle, delimiter=self.delimiter, strict=True)
            header = next(reader, None)
            if header is None:
                return
            last_line = reader.line_num
            position = 0
            while stop is None or position < stop:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    start = last_line + 1
                    if "unexpected end of data" in str(exc):
                        reason = (
                            f"a quote opened in this record is never closed: lines {start} to "
                            f"{reader.line_num} (the end of the file) would be one field"
                        )
                    else:
                        reason = f"not valid CSV ({exc})"
                    last_line = reader.line_num
                    position += 1
                    yield start, BadRecord(f"{self.path}:{start}", reason), header
                    continue
                line = last_line + 1  # where the row starts (a quoted field may span lines)
                last_line = reader.line_num
                if fields:
                    position += 1
                    yield line, fields, header

    def _record(
        self, line: int, fields: list[str], header: list[str]
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The row as a record, or why it is bad (its width, a field not UTF-8)."""
        width = len(header)
        where = f"{self.path}:{line}"
        if len(fields) != width:
            shown = self.delimiter.join(fields)
            if len(fields) < width:
                missing = ", ".join(repr(c) for c in header[len(fields) :])
                reason = f"missing column(s) {missing}: {len(fields)} of {width} fields"
            else:
                reason = f"{len(fields)} fields, but the header has {width}"
            yield BadRecord(where, reason, shown[:200])
            return
        if not "".join(fields).isascii():
            broken = next((i for i, f in enumerate(fields) if _SURROGATES.search(f)), None)
            if broken is not None:
                at = _SURROGATES.search(fields[broken])
                assert at is not None
                yield BadRecord(
                    where,
                    f"field {header[broken]!r} is not valid UTF-8 (at character {at.start() + 1})",
                    self.delimiter.join(fields).encode("utf-8", "replace").decode()[:200],
                )
                return
        value = dict(zip(header, fields, strict=True))
        self.place = where
        yield (f"line:{line}" if self.key is None else value[self.key]), value


# bytes that are not UTF-8 come through as lone surrogates (surrogateescape), so a bad
# byte is found in its field instead of becoming U+FFFD unseen
_SURROGATES = re.compile("[\udc80-\udcff]")


def _open(path: Path) -> io.TextIOWrapper:
    refuse_special_file(path, "source")  # a FIFO would wait for a writer
    try:
        return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror}") from exc


def read_csv(
    path: str | os.PathLike[str], *, key: str | None = None, delimiter: str = ","
) -> CsvSource:
    """Read a CSV file with a header row lazily; each row is a ``dict`` of strings.

    Args:
        path: the file (UTF-8).
        key: the column that identifies each row; default: the row's line number.
        delimiter: the field separator.

    A row with missing or extra fields is a :class:`BadRecord` naming the file
    and line. A file that does not exist, is empty, or whose header lacks the
    key column is refused before anything runs.
    """
    return CsvSource(path, key, delimiter)


class CsvSink(AppendingFileSink):
    """Appends outputs to one CSV file with a header row; see :func:`write_csv`."""

    kind = "csv"
    header_lines = 1

    def __init__(self, path: str | os.PathLike[str], columns: dict[str, str] | None) -> None:
        super().__init__(path)
        self.given = dict(columns) if columns is not None else None
        self.columns = Columns(self.given)

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {**super().describe(), "columns": self.given}

    def encode(self, key: str, value: Any) -> bytes:
        """The output as one CSV row."""
        return _csv_line([text_cell(cell) for cell in self.columns.row(key, value)])

    def header(self) -> bytes:
        """The column names."""
        return _csv_line(self.columns.names)

    def split(self, handle: Any) -> Iterator[bytes]:
        """The file's records: its lines, joined where a quoted field holds a newline."""
        pending = b""
        for line in handle:
            pending += line
            if pending.count(b'"') % 2 == 0:  # quotes pair up: the record is whole
                yield pending
                pending = b""
        if pending:
            yield pending

    def decode(self, record: bytes) -> dict[str, Any]:
        """One row as the fields it was written from: typed by the columns where they
        are numbers or truth values (an empty cell of those is ``None``)."""
        (cells,) = csv.reader(io.StringIO(record.decode("utf-8")))
        types = self.columns.types or {}
        return {
            name: _typed(cell, types.get(name, "string"))
            for name, cell in zip(self.columns.names, cells, strict=False)
        }

    def state(self) -> dict[str, Any]:
        """The file's length and its columns."""
        return {**super().state(), "columns": self.columns.state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Write the columns of the committed rows again."""
        self.columns = Columns.restored(state.get("columns"), self.given)


def _typed(cell: str, kind: str) -> Any:
    if kind not in ("int64", "float64", "bool"):
        return cell  # text, JSON, decimals, timestamps and bytes: as the file holds them
    if cell == "":
        return None
    if kind == "bool":
        return cell == "True"
    try:
        return int(cell) if kind == "int64" else float(cell)
    except ValueError:
        return cell


def _csv_line(fields: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue().encode()


def write_csv(path: str | os.PathLike[str], *, columns: dict[str, str] | None = None) -> CsvSink:
    """Write outputs to one CSV file with a header row, exactly once per item across resumes.

    Args:
        path: the file.
        columns: column name -> type; default: fixed by the first output (see
            :mod:`headrace.io.columns`). An output with a field that is not a
            column is a dead letter of the sink.
    """
    return CsvSink(path, columns)
