"""Sources and sinks."""

from .appending import AppendingFileSink
from .columns import Columns, as_record
from .csvfile import CsvSink, CsvSource, read_csv, write_csv
from .directory import DirectorySource, read_dir
from .formats import FORMATS, Format, open_sink, open_source, sink_at, source_at
from .hf_datasets import DatasetSink, DatasetSource, read_dataset, write_dataset
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
from .sql import SqlSink, write_sql
from .sql_source import SqlSource, read_sql

__all__ = [
    "FORMATS",
    "AppendingFileSink",
    "Format",
    "BadRecord",
    "BatchDirSink",
    "Columns",
    "CsvSink",
    "CsvSource",
    "DatasetSink",
    "DatasetSource",
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
    "sink_at",
    "source_at",
    "read_csv",
    "read_dataset",
    "read_dir",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "write_batches",
    "write_csv",
    "write_dataset",
    "write_jsonl",
    "write_parquet",
    "write_sql",
]
