"""A process-executor script without ``if __name__ == "__main__":`` stops at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STEP = """
import headrace as hr

@hr.step(executor="process", concurrency=2)
def square(x: int) -> int:
    return x * x
"""


def script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.py"
    path.write_text(STEP + body)
    return subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_an_unguarded_script_is_stopped_with_the_one_line_fix(tmp_path: Path) -> None:
    job = script(tmp_path, "print('body ran')\nresult = hr.run(square, range(10))\n")
    assert job.returncode == 1
    assert job.stdout.count("body ran") == 1  # the workers never imported the script
    last = job.stderr.strip().splitlines()[-1]
    assert last == (
        f"headrace.errors.PipelineError: step 'square' uses executor='process', and "
        f"{tmp_path / 'job.py'}:8 starts the run at the top level of the script: worker "
        "processes import the script and would run it again. Put the run under "
        '`if __name__ == "__main__":`'
    )
    assert "BrokenProcessPool" not in job.stderr


@pytest.mark.slow
def test_an_unguarded_call_of_main_is_stopped_too(tmp_path: Path) -> None:
    body = "def main():\n    hr.run(square, range(10))\n\nmain()\n"
    job = script(tmp_path, body)
    assert job.returncode == 1 and f"{tmp_path / 'job.py'}:10 starts the run" in job.stderr


@pytest.mark.slow
@pytest.mark.parametrize("guard", ['if __name__ == "__main__":', "if '__main__' == __name__:"])
def test_a_guarded_script_runs(tmp_path: Path, guard: str) -> None:
    body = f"{guard}\n    print(sum(hr.run(square, range(10), progress=False).outputs))\n"
    job = script(tmp_path, body)
    assert job.returncode == 0, job.stderr
    assert job.stdout.strip() == "285"
