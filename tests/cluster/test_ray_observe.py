"""Seeing a run on Ray: each shard exports to the collector the driver was told of."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray_pipelines
from conftest import write_items
from otlp import Receiver, attributes, points, spans

import headrace as hr

pytestmark = pytest.mark.slow


def test_each_shard_exports_to_the_collector_the_driver_was_told_of(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    try:  # the local Ray started before this was set: the workers get it from the driver
        hr.run(
            ray_pipelines.double,
            hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id"),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            progress=False,
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
