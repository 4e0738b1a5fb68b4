"""``tier="auto"`` against the simulator: each request by the cheapest tier that still
meets the run's deadline, and the requests in batches rescued online as it nears,
each answered and billed once. Counted, never timed: what the provider billed on
which tier, and what the run chose."""

from __future__ import annotations

import datetime
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from services import JOBS, example_recipe, run_quietly
from test_batch_tier import Verdict, _records

import headrace as hr
from headrace.errors import PipelineError
from headrace.llm.tier.auto import AutoConnection
from headrace.sim import SimServer, serve

FAST_BATCHES = hr.llm.BatchTier(max_requests=50, gather=0.05, poll=0.05)


def _judge(sim: SimServer, tier: hr.llm.AutoTier, **options: Any) -> Any:
    client = hr.llm.Client(
        base_url=sim.url,
        retry=hr.Retry(attempts=4, backoff=0.01),
        prices={"sim-chat": hr.llm.Price(input=1.0, output=2.0)},
    )
    return hr.llm.transduce(
        Verdict,
        client=client,
        model="sim-chat",
        instructions="Judge the tone.",
        template="Judge: {{ text }}",
        tier=tier,
        **options,
    )


def _billed(sim: SimServer) -> tuple[int, int, int]:
    """Requests the provider answered online, on flex, and billed from batches."""
    stats = sim.stats()
    flex = int(stats.get("flex_requests", 0))
    return int(stats["ok"]) - flex, flex, int(stats["batch"]["billed_requests"])


def test_without_a_deadline_every_request_goes_to_the_batch_tier(tmp_path: Path) -> None:
    with serve(batch_turnaround_s=0.2) as sim:
        tier = hr.llm.AutoTier(batch=FAST_BATCHES, turnaround="1s")
        result = run_quietly(_judge(sim, tier), _records(30), run_dir=tmp_path / "run")
        billed = _billed(sim)
    assert result.items_out == 30
    assert billed == (0, 0, 30)  # the cheapest: every request from a batch
    stats = result.metrics.steps[0].llm
    assert stats is not None and stats.batch_requests == 30 and stats.rescued == 0


def test_a_deadline_a_batch_cannot_meet_sends_requests_by_flex_or_online(
    tmp_path: Path,
) -> None:
    with serve(batch_turnaround_s=0.2) as sim:
        slow_batches = hr.llm.AutoTier(batch=FAST_BATCHES, turnaround="2h")
        flexed = run_quietly(
            _judge(sim, slow_batches), _records(20), run_dir=tmp_path / "a", deadline="1h"
        )
        on_flex = _billed(sim)
        sim.reset()
        no_flex = hr.llm.AutoTier(batch=FAST_BATCHES, turnaround="2h", flex=None)
        online = run_quietly(
            _judge(sim, no_flex), _records(20), run_dir=tmp_path / "b", deadline="1h"
        )
        only_online = _billed(sim)
    assert flexed.items_out == online.items_out == 20
    assert on_flex == (0, 20, 0)  # an hour: too short for a batch's 2 h, enough for flex
    assert only_online == (20, 0, 0)


def test_as_the_deadline_nears_batches_are_cancelled_and_the_rest_sent_online(
    tmp_path: Path,
) -> None:
    """Batches that take 40 s against a deadline of 15 s (the plan said 2 s: room for a
    slow start on a busy machine): the watchdog cancels them; what they finished is
    used, only what they left is sent online, and each request is billed once."""
    with serve(batch_turnaround_s=40.0) as sim:
        tier = hr.llm.AutoTier(batch=FAST_BATCHES, turnaround="2s", latency="0.5s", flex=None)
        run_dir = tmp_path / "run"
        result = run_quietly(_judge(sim, tier), _records(40), run_dir=run_dir, deadline=15)
        online, flex, from_batches = _billed(sim)
        cancels = sim.stats()["batch"]["cancels"]
    stats = result.metrics.steps[0].llm
    assert stats is not None and result.items_out == 40
    assert cancels >= 1 and stats.rescued == online > 0
    assert online + from_batches == 40 and flex == 0  # each billed once, on one tier
    assert stats.batch_requests == from_batches
    # the spend per tier: at half the price a request from a batch, full price online
    assert stats.flex_cost_usd == 0 and 0 < stats.batch_cost_usd < stats.cost_usd
    spent_online = stats.cost_usd - stats.batch_cost_usd
    assert f"spent ${stats.batch_cost_usd:.4f} on batches, $0.0000 on flex" in result.summary()
    assert f"${spent_online:.4f} online" in result.summary()
    assert f"{online:,} taken out of batches and sent online" in result.summary()
    from typer.testing import CliRunner

    from headrace.cli import app

    answer = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert answer.exit_code == 0, answer.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert f"{online:,} taken out and sent online" in html  # the report says it too


def test_the_plan_prices_each_request_by_the_cheapest_tier_that_still_fits() -> None:
    """The choice itself, on a fake clock: batch while the time left covers a turnaround
    and the rescue of what is in batches; then flex; then online."""
    now = [0.0]

    class Batches:
        intents: ClassVar[dict[str, Any]] = {}

    auto = AutoConnection(
        hr.llm.AutoTier(turnaround="100s", latency="1s", margin=0.0),
        online=None,  # type: ignore[arg-type]
        batch=Batches(),  # type: ignore[arg-type]
        flex=object(),  # type: ignore[arg-type]
        deadline_at=1000.0,
        calls=10,
        limit_rps=lambda: 5.0,  # the rate limit binds: 5 a second, not 10
        clock=lambda: now[0],
    )
    assert auto.online_rps() == 5.0
    assert auto.choose() == "batch"
    auto.in_batch = 4000  # 800 s to answer them online: 100 + 800 < 1000 still
    assert auto.choose() == "batch" and not auto.must_rescue()
    auto.in_batch = 4500  # 100 + 900 > 1000: no more into batches
    assert auto.choose() == "flex"
    now[0] = 150.0  # 850 s left; 900 s to answer what is in batches online: rescue now
    assert auto.must_rescue()
    now[0] = 998.0  # 2 s left: flex (planned at 3 x an online request's time) no longer fits
    auto.in_batch = 0
    assert auto.choose() == "online"
    auto.longest_batch_s = 20.0  # this run's batches took 20 s: planned 30 from now on
    assert auto.turnaround_s() == 30.0


def test_the_deadline_and_the_tier_are_checked_before_anything_runs() -> None:
    with pytest.raises(PipelineError, match=r"deadline='soon' is not a duration"):
        hr.run(hr.step(lambda x: x), [1], deadline="soon")
    with pytest.raises(PipelineError, match="margin is a share"):
        hr.llm.AutoTier(margin=2)
    moment = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    options = hr.engine.run_options.RunOptions.of(deadline=moment)
    assert options.deadline_at == moment.timestamp()


def test_a_recipe_on_the_auto_tier_with_a_deadline_from_the_command_line(
    tmp_path: Path,
) -> None:
    recipe, env = example_recipe(tmp_path)
    with serve(process=True, batch_turnaround_s=0.2) as sim:
        command = ["headrace", "run", str(recipe), "--set", f"models.reader.base_url={sim.url}"]
        command += ["--run-dir", str(tmp_path / "run"), "--tier", "auto", "--deadline", "1h"]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        billed = _billed(sim)
    assert done.returncode == 0, done.stderr
    assert billed[0] == billed[2] == 0 and billed[1] > 0  # an hour: flex (no batch prior fits)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_while_batches_are_out_or_being_rescued_then_resumed_each_item_once(
    tmp_path: Path,
) -> None:
    """SIGKILL at a random moment after the first batch was created (before, during or
    after the rescue), then the same run again: every item once in the sink, no batch
    request billed twice, every item answered by one tier or the other."""
    seed = random.SystemRandom().randrange(10**9)
    wait = random.Random(seed).uniform(0.0, 7.0)
    print(f"auto-tier kill seed {seed}: {wait:.2f} s after the first batch")
    output, run_dir = tmp_path / "out.jsonl", tmp_path / "run"
    with serve(process=True, batch_turnaround_s=20.0) as sim:
        args = [sys.executable, str(JOBS / "auto_job.py"), sim.url, str(run_dir), str(output)]
        args += ["40", "8"]
        job = subprocess.Popen(args)
        try:
            while job.poll() is None and not sim.stats()["batch"]["creates"]:
                time.sleep(0.05)
            shown = ""  # `headrace status` while it runs: the deadline as the watchdog sees it
            while job.poll() is None and "requests in batches" not in shown:
                shown = subprocess.run(
                    ["headrace", "status", str(run_dir)], capture_output=True, text=True
                ).stdout
            assert "deadline  transduce(Verdict):" in shown, shown
            time.sleep(wait)  # a random moment of the run, not a wait for something
        finally:
            job.kill()
            job.wait()
        again = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, f"seed {seed}: {again.stderr}"
        online, _, from_batches = _billed(sim)
        billed_again = sim.stats()["batch"]["billed_again"]
    keys = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    assert sorted(keys) == [f"r{i:03d}" for i in range(40)], f"seed {seed}"
    assert billed_again == 0, f"seed {seed}"
    assert online + from_batches >= 40, f"seed {seed}"


def test_a_budget_stops_the_auto_tier_before_it_is_passed_and_a_resume_finishes(
    tmp_path: Path,
) -> None:
    """A budget for part of the run, on the flex tier the deadline picks: the run stops
    (resumable) with the spend within it; the resume finishes the rest. (``max_tokens``
    bounds what each request may cost, which the budget holds before sending it.)"""
    with serve() as sim:
        tier = hr.llm.AutoTier(batch=FAST_BATCHES, turnaround="2h")
        step = _judge(sim, tier, max_tokens=50)
        stopped = run_quietly(
            step,
            _records(30),
            run_dir=tmp_path / "run",
            deadline="1h",
            budget=hr.Budget(usd=0.0003),
        )
        stats = stopped.metrics.steps[0].llm
        assert stopped.stopped and "budget" in stopped.stopped
        assert stats is not None and 0 < stats.cost_usd <= 0.0003
        assert 0 < stopped.items_out < 30
        finished = run_quietly(step, _records(30), run_dir=tmp_path / "run", deadline="1h")
        _, flex, from_batches = _billed(sim)
    assert finished.items_out == 30 - stopped.items_out
    assert from_batches == 0 and flex >= 30
