"""Hugging Face datasets in and out.

:func:`read_dataset` reads a ``datasets.Dataset`` (by position, a thousand rows at a
time), an ``IterableDataset`` (streamed: memory stays at one row group however large
it is), or a dataset folder or Hub-style repository path (loaded with
``datasets.load_dataset``). :func:`write_dataset` writes a dataset folder in the
layout the Hub and ``datasets.load_dataset`` read: Parquet shards
``data/<split>-NNNNN.parquet`` (each written whole and committed with the run store,
exactly once per item, as :func:`~headrace.io.write_parquet` writes its parts) and a
dataset card, ``README.md``, whose YAML names the split's files and features and whose
text says which run wrote it. Pushing the folder to the Hub is left to
``huggingface_hub`` (``HfApi().upload_folder``); headrace does not push.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..loading.extras import require
from .parquet import ParquetSink
from .records import BadRecord, Source

__all__ = ["DatasetSink", "DatasetSource", "read_dataset", "write_dataset"]

_ROWS = 1000  # rows of a Dataset read at once


def _datasets() -> Any:
    """The ``datasets`` library, or :class:`~headrace.errors.MissingExtra` naming the extra."""
    require({"Hugging Face datasets": ("datasets",)})
    import datasets

    return datasets


class DatasetSource(Source):
    """Rows of a Hugging Face dataset as records; see :func:`read_dataset`."""

    requires = ("datasets",)

    def __init__(self, dataset: Any, key: str | None, split: str) -> None:
        self.given = dataset
        self.key = key
        self.split = split
        self._loaded: Any = None

    @property
    def dataset(self) -> Any:
        """The dataset (loaded from its path the first time, when given one)."""
        if self._loaded is None:
            given = self.given
            if isinstance(given, str | os.PathLike):
                given = _datasets().load_dataset(str(given), split=self.split)
            self._loaded = given
        return self._loaded

    @property
    def streaming(self) -> bool:
        """Whether the dataset is an ``IterableDataset`` (no length, no random access)."""
        return not hasattr(self.dataset, "__len__")

    def describe(self) -> dict[str, Any]:
        """How to name it again: its path, or its name, config, split, rows and columns
        (a dataset object in memory: a resume must be given the same one)."""
        if isinstance(self.given, str | os.PathLike):
            path = Path(self.given)
            where = str(path.resolve()) if path.exists() else str(self.given)
            return {"kind": "dataset", "path": where, "split": self.split, "key": self.key}
        data = self.dataset
        info = getattr(data, "info", None)
        return {
            "kind": "dataset",
            "name": getattr(info, "dataset_name", None),
            "config": getattr(info, "config_name", None),
            "split": None if getattr(data, "split", None) is None else str(data.split),
            "rows": None if self.streaming else len(data),
            "columns": list(data.column_names or []),
            "key": self.key,
        }

    def check(self) -> None:
        """Refuse a key that is not a column (where the columns are known)."""
        names = self.dataset.column_names
        if self.key is not None and names is not None and self.key not in names:
            raise ValueError(f"the dataset has no key column {self.key!r} (columns: {names})")

    def count(self) -> int | None:
        """The number of rows; ``None`` for a streamed dataset."""
        return None if self.streaming else len(self.dataset)

    def records(self) -> Iterator[tuple[str, Any] | BadRecord]:
        return self.records_between(0, None)

    def records_between(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[str, Any] | BadRecord]:
        """The rows at positions ``start`` to ``stop`` (excluded; ``None``: to the end)."""
        end = 2**63 if stop is None else stop
        for index, row in zip(range(start, end), self._rows(start, stop), strict=False):
            where = f"row {index}"
            self.place = where
            if self.key is None:
                yield f"row:{index}", row
            elif row.get(self.key) is None:
                yield BadRecord(where, f"the key column {self.key!r} is empty", str(row)[:200])
            else:
                yield str(row[self.key]), row

    def _rows(self, start: int, stop: int | None) -> Iterator[dict[str, Any]]:
        data = self.dataset
        if self.streaming:
            rows = data.skip(start) if start else data
            if stop is not None:
                rows = rows.take(stop - start)
            yield from rows
            return
        end = len(data) if stop is None else min(stop, len(data))
        for begin in range(start, end, _ROWS):
            columns = data[begin : min(begin + _ROWS, end)]  # a dict of lists
            names = list(columns)
            for values in zip(*(columns[name] for name in names), strict=True):
                yield dict(zip(names, values, strict=True))


def read_dataset(dataset: Any, *, key: str | None = None, split: str = "train") -> DatasetSource:
    """Read a Hugging Face dataset's rows as records.

    Args:
        dataset: a ``datasets.Dataset``, an ``IterableDataset`` (read as a stream:
            ``load_dataset(..., streaming=True)``), or a path that
            ``datasets.load_dataset`` reads (a folder :func:`write_dataset` wrote).
        key: the column that identifies each row; default: its position (``row:N``),
            stable only while the dataset keeps its order.
        split: the split to load, when ``dataset`` is a path.

    A resume checks the keys of the rows it skips, so a dataset that changed below
    what the run finished is refused.
    """
    return DatasetSource(dataset, key, split)


class DatasetSink(ParquetSink):
    """A dataset folder: ``data/<split>-NNNNN.parquet`` and ``README.md``; see
    :func:`write_dataset`."""

    kind = "dataset"
    requires = ("pyarrow", "datasets")

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        items_per_file: int = 10_000,
        columns: dict[str, str] | None = None,
    ) -> None:
        _datasets()
        super().__init__(Path(path) / "data", items_per_file, columns)
        self.root = Path(path)
        self.split = split
        self.prefix = f"{split}-"

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run."""
        return {
            "kind": self.kind,
            "path": str(self.root.resolve()),
            "split": self.split,
            "items_per_file": self.items_per_file,
            "columns": self.given,
        }

    def lock_path(self) -> Path:
        """The OS lock of the session writing this split, beside the folder."""
        return self.root.with_name(f".{self.root.name}.{self.split}.lock")

    def close(self) -> None:
        """Write the dataset card for the parts committed so far (a shard of a run split
        across workers leaves it to the run's end: :meth:`join_shards`)."""
        if self._parts and self.prefix == f"{self.split}-":
            self.write_card([self.directory / name for name in self._parts])

    def join_shards(self, count: int) -> None:
        """The shards' parts are the folder's: write the card for all of them."""
        parts = sorted(self._part_files())
        if parts:
            self.write_card(parts)

    def write_card(self, parts: list[Path]) -> Path:
        """``README.md``: YAML the Hub and ``load_dataset`` read (the split's files,
        its features and rows), and a line on what wrote it."""
        import pyarrow.parquet as pq
        from datasets.info import DatasetInfosDict
        from huggingface_hub import DatasetCardData

        datasets = _datasets()
        rows = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)
        info = datasets.DatasetInfo(
            features=datasets.Features.from_arrow_schema(pq.read_schema(parts[0]))
        )
        info.splits = datasets.SplitDict()
        info.splits.add(datasets.SplitInfo(name=self.split, num_examples=rows))
        pattern = f"data/{self.split}-*"
        card = DatasetCardData(
            configs=[
                {"config_name": "default", "data_files": [{"split": self.split, "path": pattern}]}
            ]
        )
        DatasetInfosDict({"default": info}).to_dataset_card_data(card)
        text = (
            f"---\n{card.to_yaml()}\n---\n\n# {self.root.name}\n\n"
            f"Written by [headrace](https://pypi.org/project/headrace/) "
            f"{importlib.metadata.version('headrace')}: "
            f"{rows:,} rows in {len(parts)} Parquet files, split `{self.split}`, each row "
            "written exactly once (its run store records which).\n"
        )
        target = self.root / "README.md"
        temporary = self.root / ".README.md.tmp"
        temporary.write_text(text)
        os.replace(temporary, target)
        return target


def write_dataset(
    path: str | os.PathLike[str],
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    items_per_file: int = 10_000,
) -> DatasetSink:
    """Write outputs as a Hugging Face dataset folder, exactly once per item.

    Args:
        path: the folder: ``data/<split>-NNNNN.parquet`` and ``README.md`` go there
            (``datasets.load_dataset(path)`` reads it; ``HfApi().upload_folder``
            pushes it).
        split: the split the rows are (``train``; another split is another run).
        columns: column name -> type, as for :func:`~headrace.io.write_parquet`
            (``list<string>``, ``struct<a: int64>``); default: fixed by the first
            output, from its declared annotations where it has them.
        items_per_file: commit a file after this many finished items (or 2 s).
    """
    return DatasetSink(path, split, items_per_file, columns)
