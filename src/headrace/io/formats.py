"""The formats headrace reads and writes, in one registry.

The command line picks a format by a path's suffix (``--input in.csv``), a
recipe by its key (``source: {csv: in.csv}``), and a resume by the ``kind`` its
run stored; all three ask this registry, so a format added here is known to
all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .csvfile import read_csv, write_csv
from .directory import read_dir
from .jsonl import read_jsonl, write_jsonl
from .parquet import read_parquet, write_parquet
from .parts import write_batches
from .records import DurableSink, Source, refuse_special_file
from .sql import write_sql
from .sql_source import read_sql

__all__ = ["FORMATS", "Format", "open_sink", "open_source", "sink_at", "source_at"]


@dataclass(frozen=True, slots=True)
class Format:
    """One format: its name (a recipe's key), the suffix a path of it has, its reader
    and writer, and the ``kind`` a stored run describes its source and sink with."""

    name: str
    suffix: str | None
    read: Callable[..., Source] | None
    write: Callable[..., DurableSink] | None
    source_kind: str | None
    sink_kind: str | None


FORMATS: tuple[Format, ...] = (
    Format("jsonl", ".jsonl", read_jsonl, write_jsonl, "jsonl", "jsonl"),
    Format("csv", ".csv", read_csv, write_csv, "csv", "csv"),
    Format("parquet", ".parquet", read_parquet, write_parquet, "parquet", "parquet"),
    Format("dir", None, read_dir, write_batches, "directory", "batches"),
    Format("sql", None, read_sql, write_sql, "sql", "sql"),
)
"""Every format, by name."""

_BY_NAME = {f.name: f for f in FORMATS}


def by_name(name: str) -> Format:
    """The format a recipe key names (``jsonl``, ``csv``, ``parquet``, ``dir``, ``sql``)."""
    return _BY_NAME[name]


def source_at(path: Path, **options: Any) -> Source:
    """The source of a file by its suffix, or of a directory of files.

    Raises:
        ValueError: a suffix no format reads.
    """
    if path.is_dir():
        return read_dir(path)
    refuse_special_file(path, "source")
    for candidate in FORMATS:
        if candidate.suffix == path.suffix and candidate.read is not None:
            return candidate.read(path, **options)
    readable = ", ".join(f.suffix for f in FORMATS if f.suffix and f.read)
    raise ValueError(f"{path}: give a {readable} file, or a directory")


def sink_at(
    output: str,
    *,
    table: str | None = None,
    key: str | None = None,
    columns: dict[str, str] | None = None,
) -> DurableSink:
    """The sink an output names: a database URL (with ``table``), a file by its suffix,
    or any other path as a directory of batch files. ``columns`` (name -> column type,
    as a recipe's ``columns:``) is for CSV, Parquet and database outputs.

    Raises:
        ValueError: a database URL without a table, a table for a file, or columns
            for an output that has none.
    """
    if "://" in output:
        if table is None:
            raise ValueError("a database output needs a table")
        return write_sql(output, table, key=key or "key", columns=columns)
    if table is not None:
        raise ValueError("a table is for a database output")
    path = Path(output)
    refuse_special_file(path, "sink")
    for candidate in FORMATS:
        if candidate.suffix == path.suffix and candidate.write is not None:
            if columns is None:
                return candidate.write(path)
            if candidate.suffix not in (".csv", ".parquet"):
                raise ValueError(
                    f"a {candidate.suffix} output has no columns; columns are for .csv, "
                    ".parquet and database outputs"
                )
            return candidate.write(path, columns=columns)
    if columns is not None:
        raise ValueError("a directory of batch files has no columns")
    return write_batches(path)


def open_source(description: dict[str, Any]) -> Source:
    """Re-open a source from the description stored with a run.

    Raises:
        ValueError: the source cannot be re-opened from a description (an
            in-memory iterable: resume such a run from Python).
    """
    kind = description.get("kind")
    for candidate in FORMATS:
        if candidate.source_kind == kind and candidate.read is not None:
            source: Source = _reopen(candidate.read, description)
            return source
    raise ValueError(
        f"a {kind!r} source cannot be re-opened from the command line; "
        "resume this run from Python with hr.run(..., resume=True)"
    )


def open_sink(description: dict[str, Any]) -> DurableSink:
    """Re-open a sink from the description stored with a run.

    Raises:
        ValueError: a sink that cannot be re-opened from its description.
    """
    kind = description.get("kind")
    for candidate in FORMATS:
        if candidate.sink_kind == kind and candidate.write is not None:
            sink: DurableSink = _reopen(candidate.write, description)
            return sink
    raise ValueError(f"a {kind!r} sink cannot be re-opened from the command line")


def _reopen(opener: Callable[..., Any], description: dict[str, Any]) -> Any:
    """Call ``opener`` with a stored description's options (read back from a run store:
    untrusted, so a description it does not take is a one-line error)."""
    options = {k: v for k, v in description.items() if k != "kind"}
    try:
        if "path" in options:
            return opener(options.pop("path"), **options)
        return opener(**options)
    except TypeError as exc:
        raise ValueError(
            f"the run store's {description.get('kind')!r} description: {exc}"
        ) from None
