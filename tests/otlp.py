"""An OTLP/HTTP collector on this machine for the tests: it decodes and keeps what a run
sends, and reads the metrics' points and the spans back."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Receiver:
    """An OTLP/HTTP collector: keeps every metrics and trace request it is sent."""

    def __init__(self) -> None:
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.traces: list[ExportTraceServiceRequest] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/metrics":
                    with receiver.arrived:
                        receiver.metrics.append(ExportMetricsServiceRequest.FromString(body))
                        receiver.arrived.notify_all()
                elif self.path == "/v1/traces":
                    receiver.traces.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_metrics(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` metrics exports have arrived; whether they did."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.metrics) >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def points(request: ExportMetricsServiceRequest, name: str) -> dict[tuple[Any, ...], float]:
    """Every data point of metric ``name``: its attributes -> its value."""
    found: dict[tuple[Any, ...], float] = {}
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                data = metric.sum if metric.HasField("sum") else metric.gauge
                for point in data.data_points:
                    at = tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                    value = point.as_double if point.HasField("as_double") else point.as_int
                    found[at] = float(value)
    return found


def attributes(holder: Any) -> dict[str, Any]:
    """A span's or a resource's attributes."""
    values = {}
    for a in holder.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind)
    return values


def spans(receiver: Receiver) -> list[Any]:
    return [
        span
        for request in receiver.traces
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
