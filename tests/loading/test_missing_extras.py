"""A run whose parts need a library that is not installed is refused before it starts:
one line naming the part, the module and the extra, exit 2, nothing created. The tests
hide an installed library from a fresh interpreter (a finder that says it is absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each case starts a fresh interpreter

HIDE = """
import importlib.abc
import os
import sys

HIDDEN = set(os.environ["HEADRACE_TEST_HIDE"].split(","))


class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
"""

STEPS = """
import headrace as hr

embedding = hr.models.embed(field="text")
tones = hr.models.sentiment(field="text")


@hr.step
def passes(row: dict) -> dict:
    return row
"""


def _headrace(tmp_path: Path, hidden: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hide").mkdir(exist_ok=True)
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE)
    (tmp_path / "extra_steps.py").write_text(STEPS)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": n, "text": f"text {n}"}) + "\n" for n in range(3))
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "hide"), str(tmp_path)]),
        "HEADRACE_TEST_HIDE": hidden,
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _run(
    tmp_path: Path, hidden: str, pipeline: str, output: str
) -> subprocess.CompletedProcess[str]:
    return _headrace(
        tmp_path,
        hidden,
        "run",
        pipeline,
        "--input",
        "in.jsonl",
        "--key",
        "id",
        "--output",
        output,
        "--run-dir",
        "run",
    )


def test_a_parquet_output_without_pyarrow_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _run(tmp_path, "pyarrow", "extra_steps:passes", "out.parquet")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # no traceback
    assert "--output out.parquet: Parquet needs pyarrow" in lines[0]
    assert "pip install 'headrace[parquet]'" in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.parquet").exists()


def test_a_model_step_without_torch_is_refused_not_a_dead_letter_per_item(
    tmp_path: Path,
) -> None:
    done = _run(tmp_path, "torch,sentence_transformers", "extra_steps:embedding", "out.jsonl")
    assert done.returncode == 2, done.stderr
    assert "step 'embed' needs torch, sentence_transformers" in done.stderr
    assert "pip install torch==2.13.0 && pip install 'headrace[models]'" in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.jsonl").exists()


def test_a_step_that_does_not_need_the_missing_library_runs(tmp_path: Path) -> None:
    done = _run(tmp_path, "torch", "extra_steps:tones", "out.jsonl")  # VADER needs no torch
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def test_info_names_the_extra_for_each_missing_part(tmp_path: Path) -> None:
    done = _headrace(tmp_path, "ray,pyarrow", "info")
    assert done.returncode == 0, done.stderr
    assert "ray           missing ray: pip install 'headrace[ray]'" in done.stdout
    assert "parquet       missing pyarrow: pip install 'headrace[parquet]'" in done.stdout
