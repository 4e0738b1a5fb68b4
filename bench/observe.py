"""What watching a run costs: the time series and the Prometheus exporter on vs off,
and how long the report of a large run takes to write.

(a) a durable run of ``--items`` items through a trivial async step (the engine's
own cost is all there is to slow down) with the time series switched off (the
reference: the timeline replaced by one that does nothing), (b) as shipped (the
time series on), (c) with the exporter too, scraped every 50 ms (Prometheus
scrapes every 15 s), (e) with the OpenTelemetry export instead, every 100 ms to a
collector on this machine (the SDK's default is 60 s). Repeats alternate the four;
the best of each is compared.
Then (d) a durable run of ``--report-items`` items with 1% dead letters, and the
time ``headrace report`` takes to write its page. Prints one JSON line.

    python bench/observe.py [--items 100000] [--repeats 3] [--report-items 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import headrace as hr
import headrace.engine.run_loop as run_loop
from headrace.report.page import write_report
from headrace.store import StoreLocation

REAL_TIMELINE = run_loop.Timeline


class NoTimeline:
    """The reference: a timeline that records nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def run(self, finished: asyncio.Event) -> None:
        await finished.wait()


@hr.step(concurrency=64)
async def touch(x: int) -> int:
    await asyncio.sleep(0)
    return x


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def durable(items: int, *, series: bool, port: int | None = None) -> float:
    run_loop.Timeline = REAL_TIMELINE if series else NoTimeline  # type: ignore[misc]
    run_dir = Path(tempfile.mkdtemp(prefix="observe-bench-"))
    stop = threading.Event()
    scrapes = [0]

    def scrape() -> None:
        while not stop.wait(0.05):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
                    scrapes[0] += 1
            except OSError:
                continue

    scraper = threading.Thread(target=scrape, daemon=True) if port is not None else None
    if scraper is not None:
        scraper.start()
    try:
        started = time.perf_counter()
        hr.run(touch, range(items), run_dir=run_dir, progress=False, metrics_port=port)
        return time.perf_counter() - started
    finally:
        stop.set()
        if scraper is not None:
            scraper.join()
            assert scrapes[0] > 0, "the exporter was never scraped"
        run_loop.Timeline = REAL_TIMELINE  # type: ignore[misc]
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def otlp_collector() -> Iterator[list[int]]:
    """A collector on this machine that counts what it is sent, named in the
    environment as the OTLP endpoint, exporting every 100 ms."""
    received = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    names = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
    }
    os.environ.update(names)
    try:
        yield received
    finally:
        for name in names:
            del os.environ[name]
        server.shutdown()
        server.server_close()
    assert received[0] > 1, "the run exported nothing"


def report_of_a_large_run(items: int) -> dict[str, Any]:
    def judge(x: int) -> int:
        if x % 100 == 42:
            raise ValueError(f"item {x} is bad")
        return x

    run_dir = Path(tempfile.mkdtemp(prefix="observe-report-"))
    try:
        started = time.perf_counter()
        hr.run(hr.step(judge), range(items), run_dir=run_dir, progress=False)
        run_s = time.perf_counter() - started
        started = time.perf_counter()
        page = write_report(StoreLocation(run_dir), run_dir / "report.html")
        report_s = time.perf_counter() - started
        return {
            "report_items": items,
            "report_run_s": round(run_s, 2),
            "report_s": round(report_s, 3),
            "report_bytes": page.stat().st_size,
            "report_s_per_run_s": round(report_s / run_s, 4),
        }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report-items", type=int, default=1_000_000)
    args = parser.parse_args()
    arms = ("off", "series", "series_and_exporter", "series_and_otlp")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        times["off"].append(durable(args.items, series=False))
        times["series"].append(durable(args.items, series=True))
        times["series_and_exporter"].append(durable(args.items, series=True, port=free_port()))
        with otlp_collector():
            times["series_and_otlp"].append(durable(args.items, series=True))
    best = {name: min(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "bench": "observe",
                "items": args.items,
                "off_s": round(best["off"], 3),
                "series_s": round(best["series"], 3),
                "series_and_exporter_s": round(best["series_and_exporter"], 3),
                "series_vs_off": round(best["series"] / best["off"], 3),
                "series_and_otlp_s": round(best["series_and_otlp"], 3),
                "exporter_vs_off": round(best["series_and_exporter"] / best["off"], 3),
                "otlp_vs_off": round(best["series_and_otlp"] / best["off"], 3),
                **report_of_a_large_run(args.report_items),
            }
        )
    )


if __name__ == "__main__":
    main()
