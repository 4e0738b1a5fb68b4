"""Prometheus exposition: scraped while the run goes on, read at the scrape, no secret."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from services import free_port, run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.errors import PipelineError
from headrace.metrics.exporter import families


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} is not in the scrape")


def test_a_scrape_mid_run_reads_the_counters_of_that_moment(tmp_path: Path) -> None:
    port = free_port()
    scrapes: list[str] = []

    @hr.step(concurrency=1)
    async def work(x: int) -> int:
        if x in (100, 300):  # the item waits for the scrape; the loop stays free to answer
            scrapes.append(await asyncio.to_thread(scrape, port))
        return x

    run_quietly(work, range(400), run_dir=tmp_path, metrics_port=port)
    first, second = scrapes
    read = value(first, "headrace_items_read_total")
    assert 101 <= read <= 100 + 16 < value(second, "headrace_items_read_total")  # window 16
    calls = value(first, 'headrace_step_calls_total{step="work"}')
    assert calls == 100  # items 0..99 done, 100 is in its call
    assert value(first, 'headrace_step_in_flight{step="work"}') == 1
    assert value(first, 'headrace_step_slots{step="work"}') == 1
    every = value(first, 'headrace_step_latency_seconds_bucket{le="+Inf",step="work"}')
    assert every == value(first, 'headrace_step_latency_seconds_count{step="work"}') == calls
    with pytest.raises(OSError):  # the run ended: nothing listens any more
        scrape(port)


def test_no_credential_reaches_the_exported_metrics() -> None:
    data: dict[str, Any] = {
        "items": {"in": 5},
        "steps": [{"name": "s", "cache": {"hits": {"redis://:s3cret-pw@cache:6379/0": 3}}}],
    }

    class Fixed:
        def collect(self) -> Any:
            return families(data)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert "s3cret-pw" not in text
    assert 'headrace_step_cache_hits_total{step="s",tier="redis://:***@cache:6379/0"} 3.0' in text


def test_a_bad_port_is_refused_before_anything_runs(tmp_path: Path) -> None:
    for port in (-1, 70000, "9464", True):
        with pytest.raises(PipelineError, match="metrics_port must be a port"):
            run_quietly(lambda x: x, [1], metrics_port=port)  # type: ignore[arg-type]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            hr.run(lambda x: x, [1], run_dir=tmp_path / "r", metrics_port=taken.getsockname()[1])
    assert not (tmp_path / "r" / "run.sqlite").exists()  # nothing was started


def test_a_cluster_run_refuses_metrics_port() -> None:
    with pytest.raises(PipelineError, match="cannot export them yet"):
        hr.run(lambda x: x, [1], run_dir="r", backend=hr.Ray(), metrics_port=9464)


def test_the_command_line_refuses_a_port_that_is_not_one() -> None:
    answer = CliRunner().invoke(app, ["resume", "r", "--metrics-port", "70000"])
    assert answer.exit_code == 2
