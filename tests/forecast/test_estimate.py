"""``hr.estimate`` and ``headrace estimate``: the stratified sample, the projection's
arithmetic on measures made up for it, intervals that cover the real run, the pilot
that starts no run, and the estimate kept for the dry run and the report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from services import example_recipe, run_quietly

import headrace as hr
from headrace.errors import PipelineError
from headrace.forecast.projection import (
    FLEX_SLOWDOWN,
    ChunkMeasure,
    Interval,
    StepMeasure,
    project,
)
from headrace.forecast.sampling import stratified
from headrace.report.record import read_estimate
from headrace.sim import serve

PRICE = hr.llm.Price(input=1.0, output=2.0)


class Verdict(BaseModel):
    tone: str
    score: int


def _corpus(n: int) -> list[dict[str, Any]]:
    # texts of very different lengths, longer further in: a sample from the start alone
    # would miss the expensive end
    return [{"id": i, "text": "word " * (3 + (i * 37) % 60 + i // 25)} for i in range(n)]


def _judge(url: str, **client: Any) -> Any:
    llm = hr.llm.Client(base_url=url, prices={"sim-chat": PRICE}, **client)
    return hr.llm.transduce(
        Verdict, client=llm, model="sim-chat", instructions="Judge.", template="J: {{ text }}"
    )


def test_the_sample_takes_one_item_from_each_equal_run_of_the_source(tmp_path: Path) -> None:
    drawn = stratified(list(range(1000)), 10, seed=4)
    assert drawn.total == 1000 and len(drawn.items) == 10
    assert [p // 100 for p in drawn.positions] == list(range(10))  # one per stratum
    assert stratified(list(range(1000)), 10, seed=4).items == drawn.items  # seeded
    assert stratified(list(range(1000)), 10, seed=5).items != drawn.items
    assert stratified(iter(range(3)), 10).items == [0, 1, 2]  # fewer than asked: all
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(50)) + "{broken\n")
    from_file = stratified(hr.read_jsonl(path, key="id"), 5)
    assert from_file.total == 50 and len(from_file.items) == 5  # the bad line left out
    with pytest.raises(PipelineError, match="holds no item"):
        stratified([], 5)


def _chunk(items: int, **step: Any) -> ChunkMeasure:
    base: dict[str, Any] = {"name": "ask", "slots": 8, "work_s": 1.0, "llm": True, "chat": True}
    base["price"] = lambda tier, p, c: (p + 2 * c) / 1e6 * (0.5 if tier != "online" else 1.0)
    return ChunkMeasure(items=items, steps=[StepMeasure(**{**base, **step})])


def test_the_projection_takes_the_slowest_bound_and_each_tiers_price() -> None:
    # 10 items a chunk, 1 request each, 0.1 s of work an item on 8 slots: 80 items/s
    chunks = [_chunk(10, requests=10, prompt_tokens=1000, completion_tokens=500)] * 3
    online = project(chunks, 8000, "online")
    # 8,000 items at 80 a second; the last call in flight (0.1 s) may end it later
    assert online.wall_s == Interval(100.0, 100.0, 100.1)
    assert online.requests.p50 == 8000 and online.tokens.p50 == 8000 * 150
    assert online.cost_usd is not None and online.cost_usd.p50 == pytest.approx(8000 * 200 / 1e6)
    flex = project(chunks, 8000, "flex")
    assert flex.wall_s.p50 == pytest.approx(100.0 * FLEX_SLOWDOWN)
    assert flex.cost_usd is not None and flex.cost_usd.p50 == pytest.approx(online.cost_usd.p50 / 2)
    # a rate limit of 600 requests a minute binds first: 10 items a second; every chunk
    # paced alike, the run's ends still widen it: its first burst (1 s) sooner, its
    # last call (0.1 s) later
    limited = [_chunk(10, requests=10, requests_per_minute=600.0)] * 3
    paced = project(limited, 8000, "online").wall_s
    assert (paced.p10, paced.p50, paced.p90) == pytest.approx((799.0, 800.0, 800.1))
    # the batch tier: one batch of 8,000 requests, the turnaround's rounds
    batch = project(limited, 8000, "batch", (60.0, 600.0, 6000.0))
    assert batch.wall_s == Interval(60.0, 600.0, 6000.0)
    many = project([_chunk(10, requests=10, batch_size=1000, batches_at_once=2)], 8000, "batch")
    assert many.wall_s.p50 == pytest.approx(4 * 7200.0)  # 8 batches, 2 at a time
    # an unpriced model: no cost; spread between chunks widens the interval
    unpriced = project([_chunk(10, requests=10, price=lambda *a: None)] * 2, 100, "online")
    assert unpriced.cost_usd is None
    spread = project([_chunk(10, requests=10), _chunk(10, requests=30)], 1000, "online")
    assert spread.requests.p10 < spread.requests.p50 == 2000 < spread.requests.p90


def test_the_pilot_covers_the_real_runs_cost_and_starts_no_run() -> None:
    corpus = _corpus(1000)
    with serve(process=True) as sim:
        real = run_quietly(_judge(sim.url), corpus)
        real_cost = real.metrics.steps[0].llm.cost_usd  # type: ignore[union-attr]
        sim.reset()
        covered, errors = 0, []
        for seed in range(10):
            found = hr.estimate(_judge(sim.url), corpus, sample=100, seed=seed)
            cost = found.tiers["online"].cost_usd
            assert cost is not None
            covered += cost.covers(real_cost)
            errors.append(abs(cost.p50 - real_cost) / real_cost)
        billed = sim.stats()["ok"]
    assert covered >= 8, (covered, errors)  # p10-p90 holds the real cost in 8 of 10
    assert max(errors) <= 0.15, errors  # the point estimate within 15%
    assert billed == 10 * 100  # each pilot asked for its sample only: no run started
    assert found.total == 1000 and found.sample == 100 and found.chunks == 10
    assert set(found.tiers) == {"online", "flex", "batch"}
    assert "estimate from a pilot of 100 of 1,000 items" in found.summary()


def test_a_batch_tier_step_is_piloted_online_and_keeps_its_tier(tmp_path: Path) -> None:
    with serve() as sim:
        llm = hr.llm.Client(base_url=sim.url, prices={"sim-chat": PRICE})
        step = hr.llm.complete(client=llm, model="sim-chat", prompt="{text}", tier="batch")
        found = hr.estimate(step, _corpus(200), sample=20, chunks=4, run_dir=tmp_path / "run")
        assert sim.stats()["batch"]["creates"] == 0 and sim.stats()["ok"] == 20
    assert step.tier_name == "batch"  # given back after the pilot
    kept = read_estimate(tmp_path / "run")
    assert kept is not None and set(kept) == {"online", "flex", "batch"}
    assert kept["batch"]["wall_s"] == tuple(found.tiers["batch"].wall_s.to_dict(3).values())


def test_a_damaged_or_linked_estimate_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "estimate.json").write_text('{"tiers": {"online": {"cost_usd": {"p10": 3, '
                                            '"p50": 1, "p90": 2}, "wall_s": null}}}')  # fmt: skip
    assert read_estimate(tmp_path) is None  # p10 above p50
    (tmp_path / "estimate.json").unlink()
    (tmp_path / "elsewhere.json").write_text("{}")
    (tmp_path / "estimate.json").symlink_to(tmp_path / "elsewhere.json")
    assert read_estimate(tmp_path) is None


def test_estimate_then_run_from_the_command_line_and_the_report_compares(
    tmp_path: Path,
) -> None:
    recipe, env = example_recipe(tmp_path)
    with serve(process=True) as sim:
        url = ["--set", f"models.reader.base_url={sim.url}"]

        def headrace(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["headrace", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip

        estimated = headrace("estimate", str(recipe), *url, "--sample", "8", "--chunks", "4")
        assert estimated.returncode == 0, estimated.stderr
        asked = sim.stats()["ok"]
        planned = headrace("run", str(recipe), *url, "--dry-run")
        ran = headrace("run", str(recipe), *url)
        assert ran.returncode == 0, ran.stderr
        again = headrace("estimate", str(recipe), *url, "--sample", "8", "--chunks", "4")
        report = headrace("report", str(tmp_path / ".headrace" / "catalogue"))
    assert "estimate from a pilot of 8 of" in estimated.stdout and asked >= 1
    assert "estimate measured by a pilot (headrace estimate" in planned.stdout
    assert report.returncode == 0, report.stderr
    # the cache the run filled is not read by a pilot: it measures what requests cost
    assert again.stdout.splitlines()[2] == estimated.stdout.splitlines()[2]
    page = (tmp_path / ".headrace" / "catalogue" / "report.html").read_text()
    assert "Estimated before the run" in page and 'data-key="estimate-online-cost_usd"' in page
