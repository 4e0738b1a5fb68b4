"""OpenTelemetry export of a run: its metrics while it goes on and, when a session ends,
a trace of it, sent over OTLP/HTTP to the collector the standard environment names.

A run exports when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the ``_METRICS_``/``_TRACES_``
form) is set and ``OTEL_SDK_DISABLED`` is not ``true``; ``OTEL_METRICS_EXPORTER=none``
or ``OTEL_TRACES_EXPORTER=none`` turns one signal off. Everything else (headers,
timeout, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_METRIC_EXPORT_INTERVAL``) is read by the OpenTelemetry SDK as usual.

Nothing is added to an item's path: every ``OTEL_METRIC_EXPORT_INTERVAL`` the run's
loop takes one snapshot of its metrics (so one export is one consistent state) and a
thread of the exporter's own sends it, through observable instruments that read that
snapshot. The names are the Prometheus exporter's with dots
(``headrace.step.calls``, attribute ``step``); latency is exported as percentiles
(``headrace.step.latency_seconds``, attribute ``quantile``), as observable
instruments cannot carry a histogram. The trace is one span for the session (its
counts as attributes, an error status when it failed) with a child span per step.
A collector that is down costs a log line, never the run. Needs
``pip install 'headrace[otel]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import PipelineError
from ..services.secrecy import scrub_url
from .exporter import STEP_COUNTERS, STEP_GAUGES
from .histogram import Histogram
from .run_data import RunView

__all__ = ["SHARD", "OtlpExporter", "otlp_signals"]

_log = logging.getLogger("headrace.run")

QUANTILES = (0.5, 0.95, 0.99)
"""The latency percentiles exported per step."""
SHARD: contextvars.ContextVar[int | None] = contextvars.ContextVar("headrace_shard", default=None)
"""The shard of a cluster run this worker runs now, if it does: its exports carry it
as the resource attribute ``headrace.shard``, so the collector keeps each shard's
series apart."""
CLOSE_WAIT_S = 15.0
"""The longest a session's end waits for its last export."""
_OUTCOMES = ("out", "dead", "filtered", "duplicate")


def otlp_signals(environ: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether ``environ`` asks for metrics and for traces to be exported over OTLP.

    Raises:
        PipelineError: it asks for a protocol other than ``http/protobuf``.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False, False
    general = bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    wanted = []
    for signal in ("METRICS", "TRACES"):
        configured = general or bool(environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
        off = environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none"
        wanted.append(configured and not off)
        protocol = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if wanted[-1] and protocol.strip() != "http/protobuf":
            raise PipelineError(
                f"headrace exports OTLP over http/protobuf; the environment asks for "
                f"{protocol.strip()!r} (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"
            )
    return wanted[0], wanted[1]


def _observations(data: dict[str, Any]) -> Iterator[tuple[str, str, float, dict[str, str]]]:
    """Every value of a metrics snapshot as ``(kind, name, value, attributes)``, kind
    ``counter`` or ``gauge``."""
    run = RunView(data)
    for outcome in _OUTCOMES:
        yield "counter", "items_finished", run.number("items", outcome), {"outcome": outcome}
    yield "counter", "items_read", run.number("items", "in"), {}
    yield "gauge", "items_in_flight", run.number("in_flight"), {}
    yield "gauge", "items_skipped", run.number("items", "skipped"), {}
    yield "gauge", "items_source", run.number("total"), {}
    yield "counter", "sink_busy_seconds", run.number("sink_busy_s"), {}
    yield "counter", "sink_blocked_seconds", run.number("sink_blocked_s"), {}
    for step in run.steps:
        label = {"step": step.name}
        for name, path, _ in STEP_COUNTERS:
            yield "counter", f"step_{name}", step.number(*path), label
        for name, path, _ in STEP_GAUGES:
            yield "gauge", f"step_{name}", step.number(*path), label
        for tier, n in step.counts("hits", within="cache").items():
            yield "counter", "step_cache_hits", n, {**label, "tier": scrub_url(tier)}
        latency = Histogram.from_sparse(step.data.get("latency_hist"))
        for q in QUANTILES:
            at = {**label, "quantile": str(q)}
            yield "gauge", "step_latency_seconds", latency.quantile(q), at


def _instruments() -> dict[str, tuple[str, str]]:
    """Each exported name with its kind and description."""
    described = {name: text for name, _, text in (*STEP_COUNTERS, *STEP_GAUGES)}
    kinds: dict[str, tuple[str, str]] = {}
    for kind, name, _, _ in _observations({"steps": [{"name": "s"}]}):
        bare = name.removeprefix("step_")
        kinds[name] = (kind, described.get(bare, name.replace("_", " ")))
    kinds["step_cache_hits"] = ("counter", "cache lookups answered, by tier")
    return kinds


class OtlpExporter:
    """Exports a run's metrics, and a trace of each session, over OTLP/HTTP.

    Args:
        snapshot: the run's metrics now (called on the run's event loop).
        metrics: export metrics; traces: export a trace at the session's end.

    Raises (from :meth:`start`):
        PipelineError: the OpenTelemetry packages are not installed.
    """

    def __init__(
        self, snapshot: Callable[[], dict[str, Any]], *, metrics: bool, traces: bool
    ) -> None:
        self._snapshot = snapshot
        self.metrics, self.traces = metrics, traces
        self._values: dict[str, list[tuple[float, dict[str, str]]]] = {}
        self._reader: Any = None
        self._provider: Any = None
        self._resource: Any = None
        self._sending: threading.Thread | None = None
        self.began_ns = time.time_ns()

    @classmethod
    def from_environment(
        cls, snapshot: Callable[[], dict[str, Any]], environ: Mapping[str, str] = os.environ
    ) -> OtlpExporter | None:
        """The exporter the environment asks for, or ``None``."""
        metrics, traces = otlp_signals(environ)
        return cls(snapshot, metrics=metrics, traces=traces) if metrics or traces else None

    def start(self) -> None:
        """Set the exporters up (call it on the run's loop, before the session opens)."""
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise PipelineError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set: exporting to it needs "
                "pip install 'headrace[otel]' (or set OTEL_SDK_DISABLED=true)"
            ) from None
        self.began_ns = time.time_ns()
        resource = Resource.create({})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "headrace"}))
        if (shard := SHARD.get()) is not None:
            resource = resource.merge(Resource({"headrace.shard": shard}))
        self._resource = resource
        if self.metrics:
            # an infinite interval: the reader has no thread; the run collects (see run)
            self._reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(), export_interval_millis=float("inf")
            )
            self._provider = MeterProvider(
                resource=resource, metric_readers=[self._reader], shutdown_on_exit=False
            )
            self._register(self._provider.get_meter("headrace"))

    def _register(self, meter: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        for name, (kind, text) in _instruments().items():

            def observe(_: CallbackOptions, name: str = name) -> list[Observation]:
                return [Observation(v, at) for v, at in self._values.get(name, ())]

            unit = "s" if name.endswith("seconds") else ("USD" if name.endswith("usd") else "")
            make = meter.create_observable_gauge
            if kind == "counter":
                make = meter.create_observable_counter
            make(f"headrace.{name.replace('_', '.', 1)}", [observe], unit=unit, description=text)

    def _take(self) -> dict[str, Any]:
        """Take the metrics now (on the run's loop) for the next export to send."""
        data = self._snapshot()
        values: dict[str, list[tuple[float, dict[str, str]]]] = {}
        for _, name, value, attributes in _observations(data):
            values.setdefault(name, []).append((value, attributes))
        self._values = values
        return data

    def interval_s(self) -> float:
        """Seconds between exports: ``OTEL_METRIC_EXPORT_INTERVAL`` (ms), else 60."""
        raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")
        try:
            return max(0.1, float(raw) / 1000)
        except ValueError:
            return 60.0

    async def run(self, finished: asyncio.Event) -> None:
        """Export the metrics every interval until ``finished`` is set."""
        if self._reader is None:
            return
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.interval_s())
            if finished.is_set():
                return
            if self._sending is None or not self._sending.is_alive():
                self._take()
                self._sending = _in_thread(self._reader.collect)

    async def close(self, failed: BaseException | None, *, aborted: bool) -> None:
        """Send the final metrics and the session's trace (its status an error when the
        session was ``aborted``, naming ``failed``'s type), then let go; bounded: a
        collector that does not answer is given up on."""
        data = self._take()
        ended_ns = time.time_ns()

        def send() -> None:
            if self._provider is not None:
                self._reader.collect()
                self._provider.shutdown()
            if self.traces:
                self._send_trace(data, ended_ns, failed, aborted)

        sending = _in_thread(send)
        await asyncio.to_thread(sending.join, CLOSE_WAIT_S)
        if sending.is_alive():
            _log.warning("headrace: the OpenTelemetry collector did not answer; gave up on it")

    def _send_trace(
        self, data: dict[str, Any], ended_ns: int, failed: BaseException | None, aborted: bool
    ) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        provider = TracerProvider(resource=self._resource, shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
        tracer = provider.get_tracer("headrace")
        run = RunView(data)
        attributes: dict[str, Any] = {
            f"headrace.items.{k}": int(run.number("items", k)) for k in ("in", *_OUTCOMES)
        }
        attributes["headrace.cost_usd"] = sum(s.number("llm", "cost_usd") for s in run.steps)
        root = tracer.start_span("headrace run", start_time=self.began_ns, attributes=attributes)
        inside = set_span_in_context(root)
        for step in run.steps:
            values = {
                f"headrace.step.{name}": step.number(*path) for name, path, _ in STEP_COUNTERS
            }
            tracer.start_span(
                f"step {step.name}",
                context=inside,
                start_time=self.began_ns,
                attributes={"headrace.step": step.name, **values},
            ).end(end_time=ended_ns)
        if aborted:
            reason = type(failed).__name__ if failed is not None else "stopped"
            root.set_status(Status(StatusCode.ERROR, reason))
        root.end(end_time=ended_ns)
        provider.shutdown()


def _in_thread(work: Callable[[], None]) -> threading.Thread:
    """Run ``work`` in a daemon thread of its own (a collector that hangs must not keep
    the process from ending); its errors are logged."""

    def guarded() -> None:
        try:
            work()
        except Exception as exc:  # an export failing costs a log line, never the run
            _log.warning("headrace: OpenTelemetry export failed: %s", exc)

    thread = threading.Thread(target=guarded, name="headrace-otlp", daemon=True)
    thread.start()
    return thread
