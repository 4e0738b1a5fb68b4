"""Packs and batches fill while items are still arriving."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services import run_quietly

import headrace as hr


def test_a_trickle_fills_batches_while_calls_are_in_flight() -> None:
    in_flight = idle_starts = 0

    @hr.step(concurrency=1)
    async def trickle(x: int) -> int:
        await asyncio.sleep(0.001)  # items reach the batch step one at a time
        return x

    @hr.step(batch=hr.Batch(max_size=8, max_wait="5ms"), concurrency=4)
    async def slow_batch(xs: list[int]) -> list[int]:
        nonlocal in_flight, idle_starts
        idle_starts += in_flight == 0
        in_flight += 1
        await asyncio.sleep(0.05)
        in_flight -= 1
        return xs

    result = run_quietly(trickle >> slow_batch, range(200), window=24)
    assert result.items_out == 200
    step = result.metrics.step("slow_batch")
    sizes = step.batch_sizes
    # a partial batch leaves on its timer only when no call of the step is in flight:
    # at most once each time the step fell idle (on a quiet machine, the first batch
    # and the tail's: a loaded machine that stalls the trickle idles it more often);
    # while calls are in flight the batches fill: every partial batch left on a timer,
    # or because the whole run waited on it ("idle", the tail's)
    timer = step.flushes.get("timer", 0)
    assert timer <= idle_starts, (step.flushes, idle_starts)
    partial = timer + step.flushes.get("idle", 0)
    assert sizes.get(8, 0) * 8 + 7 * partial >= 200, (sizes, step.flushes)


def test_the_dry_run_warns_when_the_window_cannot_fill_the_packs(tmp_path: Path) -> None:
    from headrace.recipe import Recipe

    (tmp_path / "in.jsonl").write_text('{"id": 1, "text": "a"}\n')
    recipe_text = """
source: {jsonl: in.jsonl, key: id}
sink: {jsonl: out.jsonl}
models:
  fast: {model: m, base_url: "http://127.0.0.1:9/v1"}
nodes:
  - id: tone
    llm: {model: fast, output: "first_jobs:Info", fields: [text], pack: 8}
    concurrency: 64
run: {concurrency: RUN}
"""
    (tmp_path / "r.yaml").write_text(recipe_text.replace("RUN", "64"))
    plan = Recipe(tmp_path / "r.yaml").plan()
    assert (
        "warning: tone: pack 8 x concurrency 64 needs 512 items in flight to fill every "
        "request, but the window (run.concurrency) is 64: at most 8 full packs at once; "
        "set run.concurrency to 512, or the node's concurrency to 8"
    ) in plan
    (tmp_path / "r.yaml").write_text(recipe_text.replace("RUN", "512"))
    assert "warning" not in Recipe(tmp_path / "r.yaml").plan()
