"""Each verdict on a run made to deserve it, and none on a healthy run."""

from __future__ import annotations

import json
from typing import Any

from services import run_quietly

import headrace as hr
from headrace.metrics import RunMetrics, StepMetrics
from headrace.metrics.verdicts import verdicts
from headrace.sim import serve


def rules(found: list[Any]) -> list[str]:
    return [v.rule for v in found]


def test_a_healthy_run_gets_no_verdict() -> None:
    result = run_quietly(hr.step(lambda x: x + 1, concurrency=4), range(500))
    assert result.verdicts() == []
    assert "to change:" not in result.summary()


def test_an_llm_step_at_its_rate_limit_is_told_to_pack_or_raise_the_limit() -> None:
    with serve() as sim:
        # 10 requests a second: a rate any machine keeps up with, however busy (at 100 a
        # second a loaded machine was the limit, not the rate)
        llm = hr.llm.Client(base_url=sim.url, rate=hr.Rate(requests=600, per="minute", burst=1))
        tone = hr.llm.complete(client=llm, model="m", prompt="{t}", concurrency=64, name="tone")
        result = run_quietly(tone, [{"t": str(i)} for i in range(40)])
    (verdict,) = result.verdicts()
    assert verdict.rule == "rate_limited" and verdict.step == "tone"
    assert verdict.says.startswith("`tone` is rate-limited at "), verdict.says
    assert "of 600 rpm" in verdict.says and "(`pack=`)" in verdict.says
    assert f"to change: {verdict.says}" in result.summary()


def test_steps_sharing_a_limit_get_one_verdict_from_their_stored_data() -> None:
    # the data as the run store gives it back: the steps name the group of their limit
    rate = {"requests_per_minute": 600, "tokens_per_minute": None, "wait_s": 1.0}
    step = {"slots": 2, "calls": 290, "busy_s": 1.0}
    data = {
        "wall_s": 60.0,
        "steps": [
            {**step, "name": "a", "rate": {**rate, "group": "a"}},
            {**step, "name": "b", "rate": {**rate, "group": "a"}},
            {**step, "name": "c", "rate": {**rate, "group": "c"}},  # 290 of 600: not at it
        ],
    }
    (verdict,) = verdicts(json.loads(json.dumps(data)))
    assert verdict.says.startswith("`a` and `b` are rate-limited at 97% of 600 rpm")
    assert "raise the limit, or do fewer calls" in verdict.says  # no LLM step: no pack=


def batched(**changes: Any) -> StepMetrics:
    values: dict[str, Any] = {
        "name": "embed",
        "kind": "batch",
        "calls": 100,
        "items": 700,
        "slots": 2,
        "busy_s": 2.0,
        "batch_max": 64,
        "batch_max_wait_s": 0.01,
        "batch_sizes": {7: 100},
        "flushes": {"timer": 90, "idle": 10},
    }
    return StepMetrics(**{**values, **changes})


def test_small_batches_sent_by_the_timer_are_told_to_wait_longer() -> None:
    (verdict,) = verdicts(RunMetrics(wall_s=10.0, steps=[batched()]))
    assert verdict.rule == "small_batches"
    assert verdict.says.startswith("`embed` batches average 7 of 64, 90% of them sent by the timer")
    assert "raise `max_wait` (now 10 ms)" in verdict.says
    # full batches, or small ones sent because the step had nothing else to do: nothing
    assert verdicts(RunMetrics(wall_s=10.0, steps=[batched(batch_sizes={60: 100})])) == []
    idle = batched(flushes={"idle": 90, "timer": 10})
    assert verdicts(RunMetrics(wall_s=10.0, steps=[idle])) == []
    # another step set the pace (the demo's embed): this one's batches are small because
    # its items arrive slowly, so no advice for it
    pacing = batched(name="embed", batch_sizes={60: 100}, busy_s=18.0)
    starved = batched(name="sentiment")
    assert verdicts(RunMetrics(wall_s=10.0, steps=[pacing, starved])) == []


def threads(**changes: Any) -> StepMetrics:
    values: dict[str, Any] = {
        "name": "clean",
        "kind": "function",
        "executor": "thread",
        "calls": 1000,
        "items": 1000,
        "slots": 8,
        "busy_s": 75.0,  # 8 threads busy 94% of 10 s
        "cpu_s": 9.5,  # ... using 0.95 of one core between them
    }
    return StepMetrics(**{**values, **changes})


def test_threads_holding_the_gil_are_told_to_use_processes() -> None:
    (verdict,) = verdicts(RunMetrics(wall_s=10.0, steps=[threads()]))
    assert verdict.rule == "gil_bound"
    assert verdict.says == (
        "`clean` (thread) is CPU-bound in the GIL: its 8 threads used 0.95 s of CPU per "
        'second of the run, one core at most: use `executor="process"`'
    )
    waiting_on_io = threads(cpu_s=0.4)
    releasing_the_gil = threads(cpu_s=15.0)  # numpy in threads: more than one core
    idle = threads(busy_s=10.0)
    model = threads(kind="model")  # a model step has no executor= to advise
    for step in (waiting_on_io, releasing_the_gil, idle, threads(executor="process"), model):
        assert verdicts(RunMetrics(wall_s=10.0, steps=[step])) == [], step


def test_a_thread_step_counts_the_cpu_its_calls_use() -> None:
    def spin(x: int) -> int:
        total = 0
        for i in range(20_000):
            total += i
        return x + total

    result = run_quietly(hr.step(spin, executor="thread", concurrency=2), range(50))
    step = result.metrics.step("spin")
    assert step.executor == "thread" and step.cpu_s > 0
    assert step.to_dict()["cpu_s"] == round(step.cpu_s, 6)


def test_a_slow_sink_is_named() -> None:
    metrics = RunMetrics(wall_s=10.0, sink_busy_s=9.0, sink_blocked_s=4.0)
    (verdict,) = verdicts(metrics)
    assert verdict.rule == "sink_bound" and verdict.step is None
    assert verdict.says.startswith(
        "the sink is the bottleneck: lanes waited 40% of the run for outputs to be written "
        "(the writer was writing 90% of it)"
    )
    assert verdicts(RunMetrics(wall_s=10.0, sink_busy_s=9.0, sink_blocked_s=1.0)) == []


def test_a_cache_keyed_on_a_timestamp_is_named() -> None:
    items = [
        {"text": f"t{i % 5}", "fetched_at": f"2026-11-29T10:{i // 60:02d}:{i % 60:02d}Z"}
        for i in range(40)
    ]
    step = hr.step(lambda item: item["text"].upper(), name="shout", cache=hr.Cache(["memory"]))
    result = run_quietly(step, items)
    (verdict,) = result.verdicts()
    assert verdict.rule == "cache_timestamp" and verdict.step == "shout"
    assert verdict.says.startswith(
        "`shout`'s cache hit rate is 0% over 40 lookups: its key includes `fetched_at`"
    )
    # keyed on what decides the answer, 35 of the 40 are hits: no verdict
    fixed = hr.step(
        lambda item: item["text"].upper(),
        name="shout",
        cache=hr.Cache(["memory"], key=lambda item: item["text"]),
    )
    again = run_quietly(fixed, items)
    assert again.metrics.step("shout").cache.hits == {"memory": 35}  # type: ignore[union-attr]
    assert again.verdicts() == []


def test_data_read_back_damaged_gives_no_verdict_and_no_error() -> None:
    damaged: list[Any] = [
        {},
        {"wall_s": "10", "steps": "x"},
        {"wall_s": 10.0, "steps": [None, 3, {"name": 5, "slots": "8", "calls": None}]},
        {"wall_s": float("nan"), "steps": []},
        {"wall_s": 10.0, "sink_blocked_s": True},
        {"wall_s": 10.0, "steps": [{"name": "s", "cache": {"hits": "x", "misses": 99}}]},
        {"wall_s": 10.0, "steps": [{"batch_max": 64, "batch_sizes": {"x": 3, "7": "y"}}]},
    ]
    for data in damaged:
        assert verdicts(data) == []
