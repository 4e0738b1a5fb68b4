"""Shared test setup: asyncio debug mode, and small helpers."""

from __future__ import annotations

import os

# asyncio reads this whenever a loop is created: every run in the tests is checked
# for never-awaited coroutines and non-threadsafe calls.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

import glob
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import JOBS, PrivateRedis

if str(JOBS) not in sys.path:  # the pipelines tests load by import path, from any folder
    sys.path.insert(0, str(JOBS))

pytest_plugins = ["browsing"]  # the browser fixture, for the browser tests

POSTGRES_URL = os.environ.get("HEADRACE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_answers() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL (``test`` database), started if it is installed but down."""
    if _postgres_answers():
        return POSTGRES_URL
    versions = glob.glob("/etc/postgresql/*")
    if shutil.which("pg_ctlcluster") is None or not versions:
        pytest.skip(f"no PostgreSQL installed here (and none answers at {POSTGRES_URL})")
    version = Path(sorted(versions)[-1]).name
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
    )
    for _ in range(40):
        if _postgres_answers():
            return POSTGRES_URL
        time.sleep(0.5)
    pytest.fail(f"PostgreSQL is installed but did not start answering at {POSTGRES_URL}")


REDIS_URL = os.environ.get("HEADRACE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis, started if it is installed but down."""
    if _redis_answers():
        return REDIS_URL
    if shutil.which("redis-server") is None:
        pytest.skip(f"no Redis installed here (and none answers at {REDIS_URL})")
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
    )
    for _ in range(40):
        if _redis_answers():
            return REDIS_URL
        time.sleep(0.25)
    pytest.fail(f"Redis is installed but did not start answering at {REDIS_URL}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL, once for SQLite (a file in tmp_path) and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def table_name() -> Iterator[str]:
    """A fresh table name, dropped from the test PostgreSQL afterwards (SQLite files go
    with tmp_path)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    if _postgres_answers():
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f'DROP TABLE IF EXISTS "{name}"')


@pytest.fixture
def run_name() -> Iterator[str]:
    """A fresh run name (a run directory's name), whose rows in the test PostgreSQL's
    run store are deleted afterwards."""
    name = f"run-{uuid.uuid4().hex[:10]}"
    yield name
    if _postgres_answers():
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            tables = ("headrace_runs", "headrace_items", "headrace_dead", "headrace_sessions")
            for table in (*tables, "headrace_leases"):
                if connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                    connection.execute(f"DELETE FROM {table} WHERE run = %s", (name,))


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here")
    server = PrivateRedis()
    server.start()
    server.wait_until_up()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """A local Ray with 2 CPUs, shut down after the session (one per pytest process:
    the cluster tests and the combination matrix share it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist (``-n 2 --dist loadgroup``), every test of the local Ray cluster
    runs in one worker, beside the rest: two clusters of 2 CPUs each on a 2-core
    machine would starve each other and every test around them."""
    for item in items:
        if "local_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))
