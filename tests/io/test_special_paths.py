"""A FIFO, a device or a socket as a source or sink is refused in one line before
anything opens it (a FIFO source used to hang the run for ever; /dev/null and a FIFO
sink were tracebacks); a database URL's scheme is case-insensitive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import NotAFile, SourceError

pytestmark = pytest.mark.timeout(120)  # a hang fails


def _cli(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "mod.py").write_text("def double(r):\n    return {'id': r['id'], 'n': 2}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "headrace", "run", "mod:double", "--key", "id", *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"k{n}"}) + "\n" for n in range(3)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("where", ["input", "output"])
def test_a_fifo_is_refused_in_one_line(tmp_path: Path, source: Path, where: str) -> None:
    os.mkfifo(tmp_path / "fifo.jsonl")
    files = {"input": "in.jsonl", "output": "out.jsonl", where: "fifo.jsonl"}
    done = _cli(tmp_path, "--input", files["input"], "--output", files["output"], "--run-dir", "r")
    assert done.returncode == 2, done.stderr
    assert "fifo.jsonl is a FIFO (named pipe), not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()  # nothing created


@pytest.mark.slow
def test_dev_null_as_output_is_refused_in_one_line(tmp_path: Path, source: Path) -> None:
    done = _cli(tmp_path, "--input", "in.jsonl", "--output", "/dev/null", "--run-dir", "r")
    assert done.returncode == 2 and "/dev/null is a character device" in done.stderr


def test_python_and_recipes_refuse_them_too(tmp_path: Path, source: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(SourceError, match="is a FIFO"):  # one line, as every source's
        run_quietly(lambda r: r, hr.read_jsonl(tmp_path / "fifo.jsonl"))
    with pytest.raises(NotAFile, match="a durable sink must be a regular file"):
        run_quietly(
            lambda r: r,
            hr.read_jsonl(source),
            sink=hr.write_jsonl(tmp_path / "fifo.jsonl"),
            run_dir=tmp_path / "r",
        )


def test_a_database_url_scheme_in_capitals(tmp_path: Path, source: Path) -> None:
    result = run_quietly(
        lambda r: r,
        hr.read_jsonl(source, key="id"),
        sink=hr.write_sql(f"SQLITE:///{tmp_path / 'o.db'}", "t", key="id"),
        run_dir=tmp_path / "r",
    )
    assert result.items_out == 3


def test_a_link_planted_at_the_sinks_lock_is_not_followed(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not ours")
    (tmp_path / ".out.jsonl.lock").symlink_to(target)
    with pytest.raises(hr.HeadraceError, match=r"cannot lock .*\.out\.jsonl\.lock"):
        run_quietly(
            lambda r: r,
            hr.read_jsonl(source),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "r",
        )
    assert target.read_text() == "not ours" and not (tmp_path / "out.jsonl").exists()
