"""Sources and sinks."""

from typing import Any

from .appending import AppendingFileSink
from .columns import Columns, as_record
from .csvfile import CsvSink, CsvSource, read_csv, write_csv
from .directory import DirectorySource, read_dir
from .jsonl import JsonlSink, JsonlSource, read_jsonl, write_jsonl
from .parquet import ParquetSink, ParquetSource, read_parquet, write_parquet
from .parts import BatchDirSink, PartDirectorySink, write_batches
from .records import (
    BadRecord,
    DurableSink,
    KeyedSource,
    Recovered,
    Source,
    encode_json,
    item_key,
)
from .sql import SqlSink, SqlSource, read_sql, write_sql


def open_source(description: dict[str, Any]) -> Source:
    """Re-open a source from the description stored with a run.

    Raises:
        ValueError: the source cannot be re-opened from a description (an
            in-memory iterable: resume such a run from Python).
    """
    kind = description.get("kind")
    options = {k: v for k, v in description.items() if k not in ("kind", "path")}
    if kind == "jsonl":
        return read_jsonl(description["path"], **options)
    if kind == "csv":
        return read_csv(description["path"], **options)
    if kind == "parquet":
        return read_parquet(description["path"], **options)
    if kind == "directory":
        return read_dir(description["path"], **options)
    if kind == "sql":
        return read_sql(**{k: v for k, v in description.items() if k != "kind"})
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
    options = {k: v for k, v in description.items() if k not in ("kind", "path")}
    if kind == "jsonl":
        return write_jsonl(description["path"])
    if kind == "csv":
        return write_csv(description["path"], **options)
    if kind == "batches":
        return write_batches(description["path"], **options)
    if kind == "parquet":
        return write_parquet(description["path"], **options)
    if kind == "sql":
        return write_sql(**{k: v for k, v in description.items() if k != "kind"})
    raise ValueError(f"a {kind!r} sink cannot be re-opened from the command line")


__all__ = [
    "AppendingFileSink",
    "BadRecord",
    "BatchDirSink",
    "Columns",
    "CsvSink",
    "CsvSource",
    "DirectorySource",
    "DurableSink",
    "JsonlSink",
    "JsonlSource",
    "KeyedSource",
    "ParquetSink",
    "ParquetSource",
    "PartDirectorySink",
    "Recovered",
    "Source",
    "SqlSink",
    "SqlSource",
    "as_record",
    "encode_json",
    "item_key",
    "open_sink",
    "open_source",
    "read_csv",
    "read_dir",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "write_batches",
    "write_csv",
    "write_jsonl",
    "write_parquet",
    "write_sql",
]
