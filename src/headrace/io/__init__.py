"""Sources and sinks."""

from typing import Any

from .batches import BatchDirSink, write_batches
from .jsonl import JsonlSink, JsonlSource, read_jsonl, write_jsonl
from .records import BadRecord, DurableSink, KeyedSource, Source, encode_json, item_key


def open_source(description: dict[str, Any]) -> Source:
    """Re-open a source from the description stored with a run.

    Raises:
        ValueError: the source cannot be re-opened from a description (an
            in-memory iterable: resume such a run from Python).
    """
    if description.get("kind") == "jsonl":
        return read_jsonl(description["path"], key=description.get("key"))
    raise ValueError(
        f"a {description.get('kind')!r} source cannot be re-opened from the command line; "
        "resume this run from Python with hr.run(..., resume=True)"
    )


def open_sink(description: dict[str, Any]) -> DurableSink:
    """Re-open a sink from the description stored with a run.

    Raises:
        ValueError: an unknown kind of sink.
    """
    kind = description.get("kind")
    if kind == "jsonl":
        return write_jsonl(description["path"])
    if kind == "batches":
        return write_batches(description["path"], items_per_file=description["items_per_file"])
    raise ValueError(f"a {kind!r} sink cannot be re-opened from the command line")


__all__ = [
    "BadRecord",
    "BatchDirSink",
    "DurableSink",
    "JsonlSink",
    "JsonlSource",
    "KeyedSource",
    "Source",
    "encode_json",
    "item_key",
    "open_sink",
    "open_source",
    "read_jsonl",
    "write_batches",
    "write_jsonl",
]
