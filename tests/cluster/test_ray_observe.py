"""Seeing a run on Ray: each shard exports to the collector the driver was told of, and
the report joins the shards' series."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray_pipelines
from conftest import write_items
from otlp import Receiver, attributes, points, spans
from services import run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.cluster.shards import shard_location
from headrace.report.page import RunRecord
from headrace.report.series import RunSeries
from headrace.store import StoreLocation

pytestmark = pytest.mark.slow


def test_each_shard_exports_to_the_collector_the_driver_was_told_of(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    try:  # the local Ray started before this was set: the workers get it from the driver
        run_quietly(
            ray_pipelines.double,
            hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id"),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            backend=hr.Ray(workers=2, shard_size=50),
        )
    finally:
        receiver.close()
    finished: dict[int, float] = {}
    for request in receiver.metrics:  # a shard's last export is sent as it ends
        shard = attributes(request.resource_metrics[0].resource)["headrace.shard"]
        outcomes = points(request, "headrace.items.finished")
        finished[shard] = outcomes[(("outcome", "out"),)] + outcomes[(("outcome", "dead"),)]
    assert finished == {0: 50, 1: 50, 2: 50, 3: 50}  # items 5, 102 and 199 fail
    roots = [span for span in spans(receiver) if span.name == "headrace run"]
    assert sorted(attributes(span)["headrace.items.dead"] for span in roots) == [0, 1, 1, 1]


def test_the_report_of_a_run_on_ray_joins_its_shards(local_ray: None, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_quietly(
        ray_pipelines.double,
        hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id"),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=run_dir,
        backend=hr.Ray(workers=2, shard_size=50),
    )
    answer = CliRunner().invoke(app, ["report", str(run_dir)])
    assert answer.exit_code == 0, answer.output
    html = (run_dir / "report.html").read_text()
    numbers = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', html))
    assert numbers["finished"] == "200 of 200"
    assert numbers["done"] == f"{result.items_out:,}" == "197"
    assert numbers["dead"] == "3" and numbers["dead-double"] == "3"  # items 5, 102, 199
    series = RunSeries.of(RunRecord.load(StoreLocation(run_dir)).samples)
    assert series.latest is not None
    assert series.latest.number("items", "out") == 197
    assert series.whole_steps()["double"].calls == result.metrics.step("double").calls > 0
    assert sum(i.delta("items", "out") for i in series.intervals()) == 197
    assert 'data-chart="throughput"' in html and 'data-chart="latency-double"' in html
    shard = shard_location(StoreLocation(run_dir), 2).run_dir
    (shard / "run.sqlite").write_bytes(
        b"not a database" * 100
    )  # damaged between the run and its report
    answer = CliRunner().invoke(app, ["report", str(run_dir)])
    assert answer.exit_code == 1
    assert len(answer.output.strip().splitlines()) == 1 and str(shard) in answer.output
