"""What tests share: the pipelines they load by import path (``JOBS``), a free port,
and services a test starts for itself, on a port of its own, to stop and start again."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import headrace as hr

JOBS = Path(__file__).resolve().parent / "jobs"
"""The pipelines tests load by import path (``first_jobs:passes``, ``cli_job:pipeline``)
or run as scripts (``chaos_job.py``, ``slow_job.py``): on ``sys.path`` in every test
(``conftest.py``), and the ``PYTHONPATH`` of a command a test starts."""


class FakeClock:
    """A clock the test moves by hand (``clock.now += 5``), for the parts that take a
    ``clock``/``_clock``: tests count, never time."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A loopback port nothing listens on now (for a server of the test's own, or a
    connection that must be refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A Redis server of one test's own, which the test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def wait_until_up(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(40):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        pytest.fail(f"redis-server did not start on port {self.port}")


class PrivatePostgres:
    """A PostgreSQL server of one test's own (initdb in a new folder), to stop and start.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user,
    in a folder under the system's temporary directory that user can reach.
    """

    def __init__(self) -> None:
        import glob
        import os
        import tempfile

        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not versions:
            pytest.skip("no PostgreSQL server binaries here")
        self.bin = Path(versions[-1])
        folder = self.folder = Path(tempfile.mkdtemp(prefix="headrace-pg-", dir="/tmp"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(folder, "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"
        )

    def _run(self, *command: str) -> None:
        import shlex

        line = " ".join(shlex.quote(c) for c in command)
        full = ["su", "postgres", "-c", line] if self.as_postgres else ["sh", "-c", line]
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-m",
            "immediate",
            "-w",
            "stop",
        )

    def remove(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        with contextlib.suppress(subprocess.CalledProcessError):  # it was not running
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_quietly(pipeline: Any, source: Any, **options: Any) -> hr.RunResult:
    """``hr.run`` without its progress lines: how most tests run a pipeline."""
    return hr.run(pipeline, source, progress=False, **options)


async def arun_quietly(pipeline: Any, source: Any, **options: Any) -> hr.RunResult:
    """``hr.arun`` without its progress lines."""
    return await hr.arun(pipeline, source, progress=False, **options)


def example_recipe(tmp_path: Path, name: str = "transduce") -> tuple[Path, dict[str, str]]:
    """A copy of ``examples/<name>`` in ``tmp_path`` (its outputs left out): its recipe, and
    an environment for ``headrace`` with a cache of the test's own."""
    import os

    example = Path(__file__).resolve().parents[1] / "examples" / name
    shutil.copytree(example, tmp_path / name, ignore=shutil.ignore_patterns("out"))
    env = {**os.environ, "HEADRACE_CACHE_DIR": str(tmp_path / "cache")}
    return tmp_path / name / f"{name}.yaml", env
