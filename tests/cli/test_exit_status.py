"""A run that went wrong says so: an exit status for CI, ``result.ok`` and ``max_dead``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import JOBS, run_quietly

import headrace as hr


def headrace(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from headrace.cli import main; main()", *args]
    environment = {**os.environ, "PYTHONPATH": str(JOBS)}
    return subprocess.run(
        command, cwd=cwd, env=environment, text=True, capture_output=True, timeout=120
    )


def write_items(path: Path, count: int) -> None:
    path.write_text("".join(json.dumps({"id": f"k{n}", "n": n}) + "\n" for n in range(count)))


@hr.step
def odd_fails(n: int) -> int:
    if n % 2:
        raise ValueError(f"{n} is odd")
    return n


def test_result_ok_is_false_when_an_item_is_dead() -> None:
    assert run_quietly(odd_fails, [0, 2]).ok
    assert not run_quietly(odd_fails, [0, 1, 2]).ok


def test_max_dead_raises_after_the_whole_run_with_its_result() -> None:
    with pytest.raises(hr.TooManyDead) as caught:
        run_quietly(odd_fails, range(10), max_dead=0)
    result = caught.value.result
    assert result.items_in == 10 and result.items_out == 5 and result.items_dead == 5
    assert "5 of 10 items are dead letters (max_dead=0); the first: odd_fails: ValueError" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("allowed", "raises"), [(4, True), (5, False), ("40%", True), (0.5, False)]
)
def test_max_dead_takes_a_count_or_a_share(allowed: int | float | str, raises: bool) -> None:
    if raises:
        with pytest.raises(hr.TooManyDead):
            run_quietly(odd_fails, range(10), max_dead=allowed)
    else:
        assert run_quietly(odd_fails, range(10), max_dead=allowed).items_dead == 5


@pytest.mark.parametrize("bad", [-1, 1.5, "many", True, "%"])
def test_a_bad_max_dead_is_refused_before_anything_runs(bad: object) -> None:
    calls = 0

    @hr.step
    def counted(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    with pytest.raises(hr.PipelineError, match="max_dead must be a count"):
        run_quietly(counted, range(3), max_dead=bad)  # type: ignore[arg-type]
    assert calls == 0


def test_the_cli_exits_3_when_items_are_dead_and_0_when_allowed(tmp_path: Path) -> None:
    write_items(tmp_path / "in.jsonl", 10)
    common = ("first_jobs:odd_fails", "--input", "in.jsonl", "--key", "id")
    failed = headrace("run", *common, "--output", "a.jsonl", "--run-dir", "a", cwd=tmp_path)
    assert failed.returncode == 3, failed.stderr
    assert "failed: 5 of 10 items are dead letters (--max-dead 0)" in failed.stderr
    assert "headrace retry-dead a" in failed.stderr
    allowed = headrace(
        "run", *common, "--output", "b.jsonl", "--run-dir", "b", "--max-dead", "50%", cwd=tmp_path
    )
    assert allowed.returncode == 0, allowed.stderr
    counted = headrace(
        "run", *common, "--output", "c.jsonl", "--run-dir", "c", "--max-dead", "5", cwd=tmp_path
    )
    assert counted.returncode == 0, counted.stderr
    clean = headrace(
        "run", "first_jobs:passes", "--input", "in.jsonl", "--key", "id",
        "--output", "d.jsonl", "--run-dir", "d", cwd=tmp_path,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stderr


def test_the_cli_refuses_a_bad_max_dead_as_a_usage_error(tmp_path: Path) -> None:
    write_items(tmp_path / "in.jsonl", 2)
    bad = headrace(
        "run", "first_jobs:passes", "--input", "in.jsonl", "--output", "o.jsonl",
        "--run-dir", "r", "--max-dead", "lots", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "max_dead must be a count" in bad.stderr
    assert not (tmp_path / "r").exists()
