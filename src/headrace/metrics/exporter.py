"""Prometheus exposition of a running run: ``hr.run(..., metrics_port=9464)`` or
``headrace run ... --metrics-port 9464``.

The metrics are read when Prometheus scrapes, on the run's event loop (so a scrape
sees the counters as one consistent state) and nothing is added to an item's
path. Names start with ``headrace_``; each step's series carry a ``step`` label.
Counters count from the start of this session. Credentials in a Redis cache tier's
URL are scrubbed from its ``tier`` label. Needs ``prometheus-client``
(``pip install 'headrace[metrics]'``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from ..errors import PipelineError
from ..services.secrecy import scrub_url
from .histogram import Histogram
from .local_http import LocalSite
from .run_data import RunView, StepView

__all__ = ["LATENCY_BUCKETS_S", "STEP_COUNTERS", "STEP_GAUGES", "MetricsExporter", "families"]

LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""The ``le`` bounds of the exported latency histograms (headrace keeps finer ones)."""

STEP_COUNTERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("calls", ("calls",), "calls of the step's function (a batch counts once)"),
    ("items", ("items",), "items that passed through the step"),
    ("errors", ("errors",), "items that failed in the step"),
    ("busy_seconds", ("busy_s",), "time the step's calls spent working"),
    ("wait_seconds", ("wait_s",), "time items waited for a slot or the rate limit"),
    ("throttled", ("retries", "throttled"), "calls answered 429"),
    ("retries", ("retries", "retries"), "calls tried again"),
    ("rate_wait_seconds", ("rate", "wait_s"), "time calls waited for the rate limit"),
    ("llm_requests", ("llm", "requests"), "requests an LLM step sent"),
    ("llm_prompt_tokens", ("llm", "prompt_tokens"), "prompt tokens"),
    ("llm_completion_tokens", ("llm", "completion_tokens"), "completion tokens"),
    ("cost_usd", ("llm", "cost_usd"), "what the step's LLM calls cost, in US dollars"),
    ("cache_misses", ("cache", "misses"), "cache lookups no tier answered"),
)
"""Each step's counters: the exported name, where it lies in a step's data, what it counts."""
STEP_GAUGES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("slots", ("slots",), "calls the step may have in flight"),
    ("in_flight", ("concurrency", "in_use"), "calls in flight now"),
    ("rate_limit_requests_per_minute", ("rate", "requests_per_minute"), "the limit in force"),
    ("rate_limit_tokens_per_minute", ("rate", "tokens_per_minute"), "the limit in force"),
)
"""Each step's gauges, as :data:`STEP_COUNTERS`."""


def families(data: dict[str, Any]) -> Iterator[Any]:
    """Prometheus metric families of a run's metrics data (``RunMetrics.to_dict`` with
    histograms, plus ``in_flight`` and ``total``)."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    run = RunView(data)
    outcomes = CounterMetricFamily(
        "headrace_items_finished", "items finished, by outcome", labels=["outcome"]
    )
    for outcome in ("out", "dead", "filtered", "duplicate"):
        outcomes.add_metric([outcome], run.number("items", outcome))
    yield outcomes
    yield CounterMetricFamily("headrace_items_read", "items read", value=run.number("items", "in"))
    yield GaugeMetricFamily(
        "headrace_items_in_flight", "items in the pipeline now", value=run.number("in_flight")
    )
    yield GaugeMetricFamily(
        "headrace_items_skipped", "items finished by an earlier session",
        value=run.number("items", "skipped"),
    )  # fmt: skip
    if run.number("total"):
        yield GaugeMetricFamily(
            "headrace_items_source", "records the source holds", value=run.number("total")
        )
    for name, key, text in (
        ("sink_busy_seconds", "sink_busy_s", "time spent writing the sink and committing"),
        ("sink_blocked_seconds", "sink_blocked_s", "time lanes waited for the writer"),
    ):
        yield CounterMetricFamily(f"headrace_{name}", text, value=run.number(key))
    steps = run.steps
    for name, path, text in STEP_COUNTERS:
        family = CounterMetricFamily(f"headrace_step_{name}", text, labels=["step"])
        for step in steps:
            family.add_metric([step.name], step.number(*path))
        yield family
    for name, path, text in STEP_GAUGES:
        gauge = GaugeMetricFamily(f"headrace_step_{name}", text, labels=["step"])
        for step in steps:
            gauge.add_metric([step.name], step.number(*path))
        yield gauge
    hits = CounterMetricFamily(
        "headrace_step_cache_hits", "cache lookups answered, by tier", labels=["step", "tier"]
    )
    for step in steps:
        for tier, n in step.counts("hits", within="cache").items():
            hits.add_metric([step.name, scrub_url(tier)], n)
    yield hits
    latency = HistogramMetricFamily(
        "headrace_step_latency_seconds", "the duration of the step's calls", labels=["step"]
    )
    for step in steps:
        latency.add_metric([step.name], *_buckets(step))
    yield latency


def _buckets(step: StepView) -> tuple[list[tuple[str, float]], float]:
    histogram = Histogram.from_sparse(step.data.get("latency_hist"))
    buckets = [(str(le), float(histogram.count_at_most(le))) for le in LATENCY_BUCKETS_S]
    buckets.append(("+Inf", float(histogram.count)))
    total = histogram.total if math.isfinite(histogram.total) else 0.0
    return buckets, total


class MetricsExporter:
    """Serves a run's metrics for Prometheus on ``host:port`` while the run goes on.

    Args:
        snapshot: the run's metrics data now (called on the run's event loop).
        port: the port (0: any free one; see :attr:`port` once started).
        host: the address to listen on.

    Raises (from :meth:`start`):
        PipelineError: ``prometheus-client`` is not installed.
        OSError: the port cannot be listened on.
    """

    def __init__(
        self, snapshot: Callable[[], dict[str, Any]], port: int, host: str = "127.0.0.1"
    ) -> None:
        self._snapshot = snapshot
        self.port = port
        self.host = host
        self._server: LocalSite | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def collect(self) -> Iterator[Any]:
        """What a scrape reads: the metrics, taken on the run's loop at this moment."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return iter(())

        async def take() -> dict[str, Any]:
            return self._snapshot()

        try:
            data = asyncio.run_coroutine_threadsafe(take(), loop).result(timeout=10)
        except (RuntimeError, TimeoutError):
            return iter(())  # the run is ending: an empty scrape
        return families(data)

    def start(self) -> None:
        """Start serving from a thread of its own (call it on the run's loop): one thread
        and one event loop however many scrapers connect (see :mod:`.local_http`)."""
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
            from prometheus_client.registry import CollectorRegistry
        except ImportError:
            raise PipelineError(
                "metrics_port needs prometheus-client: pip install 'headrace[metrics]'"
            ) from None
        self._loop = asyncio.get_running_loop()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)

        async def scrape(request: web.Request) -> web.Response:
            # collect() waits on the run's loop: off this server's loop, in its small pool
            body = await asyncio.to_thread(generate_latest, registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        site = LocalSite(
            {"/": scrape, "/metrics": scrape}, self.host, self.port, "headrace-metrics"
        )
        self.port = site.start()
        self._server = site

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._loop = None
