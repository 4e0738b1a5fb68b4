"""Hugging Face datasets in and out: a Dataset or a streamed IterableDataset as the
source, a dataset folder that ``datasets.load_dataset`` reads as the sink, exactly once
across a kill, with nested and list features."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr

datasets = pytest.importorskip("datasets")

ROWS = [
    {"id": f"r{i:03d}", "text": f"row {i}", "tags": [f"t{i % 3}", "x"], "meta": {"n": i}}
    for i in range(250)
]


class Meta(BaseModel):
    n: int


class Enriched(BaseModel):
    id: str
    words: list[str]
    meta: Meta  # a struct column (a dict[str, int] field would be JSON text)
    length: int


@hr.step
def enrich(row: dict[str, Any]) -> Enriched:
    return Enriched(
        id=row["id"],
        words=[*row["tags"], row["text"]],
        meta=Meta(**row["meta"]),
        length=len(row["text"]),
    )


def test_a_dataset_in_a_dataset_folder_out_that_load_dataset_reads(tmp_path: Path) -> None:
    source = datasets.Dataset.from_list(ROWS)
    result = run_quietly(
        enrich,
        hr.read_dataset(source, key="id"),
        sink=hr.write_dataset(tmp_path / "out", items_per_file=100),
        run_dir=tmp_path / "run",
    )
    assert result.items_out == len(ROWS)
    parts = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert parts and all(p.startswith("train-") and p.endswith(".parquet") for p in parts)
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert loaded.num_rows == len(ROWS)
    # nested and list features come back as features, not JSON text
    assert loaded.features["words"] == datasets.List(datasets.Value("string"))
    assert loaded.features["meta"] == {"n": datasets.Value("int64")}
    rows = {row["id"]: row for row in loaded}
    assert rows["r007"]["words"] == ["t1", "x", "row 7"] and rows["r007"]["meta"] == {"n": 7}
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train-*" in card
    assert f"num_examples: {len(ROWS)}" in card and "- name: words" in card


def test_a_streamed_dataset_is_read_once_in_order(tmp_path: Path) -> None:
    streamed = datasets.Dataset.from_list(ROWS).to_iterable_dataset(num_shards=4)
    source = hr.read_dataset(streamed, key="id")
    assert source.count() is None  # a stream: its length is not known
    keys = [key for key, _ in source.records()]  # type: ignore[misc]
    assert keys == [row["id"] for row in ROWS]
    between = [key for key, _ in source.records_between(10, 20)]  # type: ignore[misc]
    assert between == keys[10:20]
    result = run_quietly(
        enrich, source, sink=hr.write_dataset(tmp_path / "out"), run_dir=tmp_path / "run"
    )
    assert result.items_out == len(ROWS)


def test_rows_by_position_and_an_empty_key_is_a_bad_record() -> None:
    rows = [{"text": "a", "id": "k0"}, {"text": "b", "id": None}, {"text": "c", "id": "k2"}]
    by_position = list(hr.read_dataset(datasets.Dataset.from_list(rows)).records())
    assert [record[0] for record in by_position] == ["row:0", "row:1", "row:2"]  # type: ignore[index]
    keyed = list(hr.read_dataset(datasets.Dataset.from_list(rows), key="id").records())
    assert isinstance(keyed[1], hr.io.BadRecord) and "row 1" in keyed[1].where
    with pytest.raises(ValueError, match="no key column 'name'"):
        hr.read_dataset(datasets.Dataset.from_list(rows), key="name").check()


def test_a_folder_path_is_a_source_too(tmp_path: Path) -> None:
    run_quietly(
        enrich,
        hr.read_dataset(datasets.Dataset.from_list(ROWS), key="id"),
        sink=hr.write_dataset(tmp_path / "first"),
        run_dir=tmp_path / "run1",
    )
    again = hr.read_dataset(str(tmp_path / "first"), key="id")
    assert again.describe()["path"] == str((tmp_path / "first").resolve())
    assert [key for key, _ in again.records()] == [row["id"] for row in ROWS]  # type: ignore[misc]


JOB = """
import sys, time
import datasets
import headrace as hr

@hr.step(concurrency=4)
async def slow(row):
    import asyncio
    await asyncio.sleep(0.01)
    return {"id": row["id"], "n": row["n"]}

rows = [{"id": f"k{i:04d}", "n": i} for i in range(600)]
hr.run(slow, hr.read_dataset(datasets.Dataset.from_list(rows), key="id"),
       sink=hr.write_dataset(sys.argv[1], items_per_file=25), run_dir=sys.argv[2], progress=False)
"""


def _committed(run_dir: Path) -> bool:
    """Whether the run store holds a finished item (read as another process would)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return bool(db.execute("SELECT count(*) FROM items").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return False


@pytest.mark.slow
def test_killed_mid_run_and_resumed_each_row_once(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    out, run_dir = tmp_path / "out", tmp_path / "run"
    job = subprocess.Popen([sys.executable, str(script), str(out), str(run_dir)])
    try:  # killed once the store committed a part (the run is far from done then)
        while job.poll() is None and not _committed(run_dir):
            time.sleep(0.05)
    finally:
        job.kill()
        job.wait()
    assert job.returncode == -signal.SIGKILL, "the job ended before it was killed"
    done = subprocess.run([sys.executable, str(script), str(out), str(run_dir)], timeout=300)
    assert done.returncode == 0
    loaded = datasets.load_dataset(str(out), split="train")
    keys = [row["id"] for row in loaded]
    assert len(keys) == len(set(keys)) == 600
    assert json.loads(json.dumps(loaded[0])) == {"id": loaded[0]["id"], "n": loaded[0]["n"]}
