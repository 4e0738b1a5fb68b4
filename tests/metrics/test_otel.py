"""OpenTelemetry export: a real OTLP/HTTP receiver on this machine decodes what a run
sends (metrics while it goes on, a trace when the session ends)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp import Receiver, attributes, points, spans
from services import free_port, run_quietly

import headrace as hr
from headrace.errors import PipelineError
from headrace.metrics.otel import _observations, otlp_signals


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    found = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.endpoint)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tone-job")
    yield found
    found.close()


def test_metrics_go_out_while_the_run_goes_on_and_a_trace_when_it_ends(
    receiver: Receiver, tmp_path: Path
) -> None:
    seen: list[int] = []

    @hr.step(concurrency=1)
    async def work(x: int) -> int:
        if x == 100:  # the item waits for two exports; the loop stays free to send them
            # (exports never overlap: the second's snapshot was taken after this began)
            seen.append(len(receiver.metrics) + 1)
            assert await asyncio.to_thread(receiver.wait_for_metrics, seen[0] + 1)
        return x

    result = run_quietly(work, range(400), run_dir=tmp_path)
    assert result.metrics.items_out == 400
    mid = receiver.metrics[seen[0]]  # taken while item 100 was in its call
    assert attributes(mid.resource_metrics[0].resource)["service.name"] == "tone-job"
    read = points(mid, "headrace.items.read")[()]
    assert 101 <= read <= 100 + 16  # window 16
    assert points(mid, "headrace.step.calls") == {(("step", "work"),): 100.0}
    assert points(mid, "headrace.step.in_flight") == {(("step", "work"),): 1.0}
    last = receiver.metrics[-1]  # sent as the session ended
    assert points(last, "headrace.items.finished")[(("outcome", "out"),)] == 400
    assert points(last, "headrace.step.calls") == {(("step", "work"),): 400.0}
    median = points(last, "headrace.step.latency_seconds")[(("quantile", "0.5"), ("step", "work"))]
    assert median > 0
    root, step = sorted(spans(receiver), key=lambda s: s.name)
    assert root.name == "headrace run" and step.name == "step work"
    assert step.parent_span_id == root.span_id and step.trace_id == root.trace_id
    assert attributes(root)["headrace.items.out"] == 400
    assert attributes(step)["headrace.step.calls"] == 400.0
    assert root.status.code == 0  # unset: the session ended well
    assert root.end_time_unix_nano > root.start_time_unix_nano


def test_a_failed_session_sends_its_trace_with_an_error_status(
    receiver: Receiver, tmp_path: Path
) -> None:
    @hr.step
    def work(x: int) -> int:
        if x == 5:
            raise ValueError("no five")
        return x

    with pytest.raises(hr.StepFailed):
        run_quietly(work, range(20), run_dir=tmp_path, on_error="raise")
    (root,) = [s for s in spans(receiver) if s.name == "headrace run"]
    assert root.status.code == 2  # error
    assert root.status.message == "StepFailed"


def test_a_collector_that_is_down_costs_the_run_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens on it
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    result = run_quietly(lambda x: x * 2, range(300), ordered=True)
    assert result.outputs == [x * 2 for x in range(300)]
    durable = run_quietly(lambda x: x * 2, range(300), run_dir=tmp_path)
    assert durable.metrics.items_out == 300


def test_the_environment_chooses_what_is_exported() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert otlp_signals({}) == (False, False)
    assert otlp_signals(endpoint) == (True, True)
    assert otlp_signals({**endpoint, "OTEL_SDK_DISABLED": "true"}) == (False, False)
    assert otlp_signals({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) == (True, False)
    only = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"}
    assert otlp_signals(only) == (True, False)
    with pytest.raises(PipelineError, match="http/protobuf"):
        otlp_signals({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_no_credential_reaches_the_exported_attributes() -> None:
    data = {"steps": [{"name": "s", "cache": {"hits": {"redis://:s3cret-pw@cache:6379/0": 3}}}]}
    tiers = [at for _, name, _, at in _observations(data) if name == "step_cache_hits"]
    assert tiers == [{"step": "s", "tier": "redis://:***@cache:6379/0"}]
