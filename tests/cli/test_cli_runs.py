import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import JOBS

ITEMS = 2000


def headrace(
    *args: str, cwd: Path, env: dict[str, str] | None = None, wait: bool = True
) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from headrace.cli import main; main()", *args]
    environment = {**os.environ, "PYTHONPATH": str(JOBS), **(env or {})}
    if not wait:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.run(
        command, cwd=cwd, env=environment, text=True, capture_output=True, timeout=120
    )


def outputs(directory: Path) -> list[str]:
    keys = []
    for path in sorted(directory.glob("batch_*.jsonl")):
        keys.extend(json.loads(line)["id"] for line in path.read_text().splitlines())
    return keys


@pytest.mark.slow
def test_run_kill_status_resume_retry_dead_from_the_command_line(tmp_path: Path) -> None:
    with (tmp_path / "in.jsonl").open("w") as handle:
        for n in range(ITEMS):
            handle.write(json.dumps({"id": f"k{n:04d}", "n": n}) + "\n")
    args = (
        "run",
        "cli_job:pipeline",
        "--input",
        "in.jsonl",
        "--key",
        "id",
        "--output",
        "out",
        "--run-dir",
        "state",
    )
    job = headrace(*args, cwd=tmp_path, wait=False)
    assert isinstance(job, subprocess.Popen)
    deadline = time.monotonic() + 60
    # the writer makes a batch file durable, then commits it: a second file means the
    # first commit is in (a kill between file and commit rightly redoes the batch)
    while len(list((tmp_path / "out").glob("batch_*.jsonl"))) < 2:
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    job.kill()
    job.wait()

    status = headrace("status", "state", cwd=tmp_path)
    assert status.returncode == 0
    assert "pipeline  cli_job:pipeline" in status.stdout
    assert "finished  " in status.stdout
    assert f" of {ITEMS:,}" in status.stdout  # pending, from the input's line count

    # the same command again resumes it (`headrace resume state` does the same)
    resumed = headrace(*args, cwd=tmp_path)
    assert "resuming the run in state: what it finished is not run again" in resumed.stderr
    # dead letters in this session make it a failed run for CI (how many the killed
    # session had already committed depends on when the kill landed)
    dead_now = int(resumed.stdout.split(" + dead ")[1].split()[0].replace(",", ""))
    assert resumed.returncode == (3 if dead_now else 0), resumed.stderr
    assert ("--max-dead 0" in resumed.stderr) == bool(dead_now)
    assert "skipped" in resumed.stdout
    keys = outputs(tmp_path / "out")
    dead = {f"k{n:04d}" for n in range(ITEMS) if n % 50 == 7}
    assert len(keys) == len(set(keys)) == ITEMS - len(dead)

    status = headrace("status", "state", cwd=tmp_path)
    assert f"dead in slow_double: {len(dead)}; last: ValueError:" in status.stdout
    assert f"pending   0 of {ITEMS:,}" in status.stdout

    fixed = headrace("retry-dead", "state", cwd=tmp_path, env={"CLI_JOB_FIXED": "1"})
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith(f"items: in {len(dead)} = out {len(dead)} + dead 0")
    keys = outputs(tmp_path / "out")
    assert len(keys) == len(set(keys)) == ITEMS
    assert (tmp_path / "state" / "dead.jsonl").read_text() == ""


def test_status_of_a_directory_without_a_run_says_so(tmp_path: Path) -> None:
    result = headrace("status", "nothing", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: there is no run in nothing"


@pytest.mark.slow
def test_a_csv_into_a_postgresql_table_with_the_run_store_in_postgresql(
    tmp_path: Path, postgres_url: str, table_name: str, run_name: str
) -> None:
    with (tmp_path / "in.csv").open("w") as handle:
        handle.write("id,n\n" + "".join(f"k{n:04d},{n}\n" for n in range(300)))
        handle.write("broken\n")
    common = ("--run-store", postgres_url)
    first = headrace(
        "run", "cli_job:from_csv", "--input", "in.csv", "--key", "id",
        "--output", postgres_url, "--table", table_name, "--run-dir", run_name, *common,
        cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 3, first.stderr
    assert first.stdout.startswith("items: in 301 = out 300 + dead 1")
    status = headrace("status", run_name, *common, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"sink      sql: {postgres_url} table {table_name}" in status.stdout
    assert "pending   0 of 301" in status.stdout
    assert "in.csv:302: missing column(s) 'n'" in status.stdout
    again = headrace("resume", run_name, *common, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "skipped 301" in again.stdout
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(f'SELECT count(*), sum(n2) FROM "{table_name}"').fetchone()
    assert rows == (300, sum(2 * n for n in range(300)))
