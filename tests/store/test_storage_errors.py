"""Storage that fails says so in one line naming the file: a full disk (a real
tmpfs filled up), a damaged run store, a damaged Parquet row group."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import SourceError, StorageError


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of the test's own (the tests run as root, as CI does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.fail("could not mount a tmpfs (the tests need root, as CI has)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


JOB = """
import headrace as hr
@hr.step
def pad(row):
    return {"id": row["id"], "pad": "x" * 2000}
pipeline = pad
"""


@pytest.mark.slow
def test_a_full_disk_is_one_line_with_the_free_space_and_the_run_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": n}) + "\n" for n in range(400)))
    out = small_disk / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "headrace", "run", "job:pipeline", "--input", "in.jsonl"]
    command += ["--key", "id", "--output", str(out), "--run-dir", "state"]
    full = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert full.returncode == 1
    [line] = full.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: cannot write {out}: No space left on device (")
    assert "bytes free on its disk); what was committed is intact" in line
    assert line.endswith("finish it with: headrace resume state")
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    resumed = subprocess.run(
        [sys.executable, "-m", "headrace", "resume", "state"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    keys = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(keys) == list(range(400))


def test_a_run_store_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.sqlite").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match=rf"the run store {run_dir}/run.sqlite cannot be read"):
        run_quietly(lambda x: x, [1, 2], run_dir=run_dir, resume=True)


def test_a_damaged_run_definition_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_quietly(lambda x: x, [1, 2], run_dir=run_dir)
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        db.execute("UPDATE run SET definition = '{broken'")
    with pytest.raises(StorageError, match=r"is damaged: its run definition is not a JSON object"):
        run_quietly(lambda x: x, [1, 2], run_dir=run_dir, resume=True)


def test_a_damaged_parquet_row_group_is_named(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"id": [f"k{i}" for i in range(2000)], "text": ["t" * 50] * 2000})
    pq.write_table(table, path, row_group_size=500, compression="none")
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata
    start = meta.row_group(2).column(1).data_page_offset
    data[start : start + 200] = b"\xff" * 200  # the third row group's text column, garbled
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=rf"{path}: row group 2 of 4 cannot be read"):
        run_quietly(lambda r: r, hr.read_parquet(path, key="id"))


DEAD_JOB = """
import headrace as hr
@hr.step
def fail(row):
    raise ValueError("x" * 3000)
pipeline = fail
"""


@pytest.mark.slow
def test_dead_letters_filling_the_disk_are_one_line_naming_it(
    tmp_path: Path, small_disk: Path
) -> None:
    """It used to end with "cannot rollback - no transaction is active", which hid the
    full disk."""
    (tmp_path / "job.py").write_text(DEAD_JOB)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": n}) + "\n" for n in range(400)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "headrace", "run", "job:pipeline", "--input", "in.jsonl"]
    command += ["--key", "id", "--output", "out.jsonl", "--run-dir", str(small_disk / "state")]
    full = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert full.returncode == 1
    [line] = full.stderr.strip().splitlines()
    assert "run.sqlite: database or disk is full (" in line and "bytes free on its disk" in line
    assert "rollback" not in line


@pytest.mark.slow
def test_report_of_a_run_on_a_full_disk_names_the_free_space(
    tmp_path: Path, small_disk: Path
) -> None:
    """It used to ask whether the store was damaged."""
    run_quietly(
        lambda r: r,
        [{"id": n} for n in range(50)],
        key="id",
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=small_disk / "run",
    )
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill what is left
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    done = subprocess.run(
        [sys.executable, "-m", "headrace", "report", str(small_disk / "run")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "bytes free" in line and "damaged" not in line
