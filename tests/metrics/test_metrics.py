import asyncio
import json
import random

import pytest
from services import run_quietly

import headrace as hr
from headrace import Histogram, RunMetrics, StepMetrics


def test_histogram_quantiles_are_within_two_percent() -> None:
    rng = random.Random(7)
    samples = sorted(rng.lognormvariate(-4, 1.2) for _ in range(20_000))
    histogram = Histogram()
    for s in samples:
        histogram.record(s)
    for q in (0.5, 0.95, 0.99):
        exact = samples[int(q * len(samples)) - 1]
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.02)
    assert histogram.count == 20_000
    assert histogram.max == samples[-1]


def test_histogram_memory_does_not_grow_with_samples() -> None:
    histogram = Histogram()
    buckets = len(histogram.counts)
    for i in range(100_000):
        histogram.record(i * 1e-6)
    assert len(histogram.counts) == buckets


def test_empty_histogram_reports_zero() -> None:
    assert Histogram().quantile(0.99) == 0.0
    assert Histogram().mean == 0.0


def test_run_metrics_round_trip_through_json() -> None:
    step = StepMetrics(name="s", kind="function")
    step.record_call(0.001, 0.002)
    metrics = RunMetrics(
        items_in=3, items_out=1, items_dead=1, items_filtered=1, wall_s=1.0, steps=[step]
    )
    data = json.loads(metrics.to_json())
    assert data["items"] == {
        "in": 3,
        "out": 1,
        "dead": 1,
        "filtered": 1,
        "skipped": 0,
        "duplicate": 0,
        "unfinished": 0,
    }
    assert data["stopped"] is None
    assert data["steps"][0]["calls"] == 1
    assert data["items_per_s"] == 3.0
    assert metrics.step("s") is step
    with pytest.raises(KeyError, match="no step named 'x'"):
        metrics.step("x")


def test_the_bottleneck_is_the_step_whose_call_slots_were_full() -> None:
    @hr.step(concurrency=2)
    async def narrow(x: int) -> int:
        await asyncio.sleep(0.02)  # long enough that a loaded machine's stalls are small
        return x

    @hr.step
    def quick(x: int) -> int:
        return x

    result = run_quietly(quick >> narrow, range(60))
    assert result.bottleneck().startswith("narrow: its 2 call slots were busy")
    assert f"bottleneck: {result.bottleneck()}" in result.summary()


def test_the_bottleneck_is_a_rate_limit_when_calls_wait_for_it_most() -> None:
    @hr.step(concurrency=8, rate=hr.Rate(requests=200, per="second", burst=1))
    async def limited(x: int) -> int:
        return x

    result = run_quietly(limited, range(60))
    said = result.bottleneck()
    assert said.startswith("limited's rate limit: at "), said
    assert said.endswith(": raise the limit")


def test_no_step_is_named_when_none_was_busy_half_the_time() -> None:
    result = run_quietly(hr.step(lambda x: x, name="ident"), range(500))
    assert result.bottleneck().startswith("no step was saturated (the busiest, ident,")
