"""The batch tier end to end against the simulator: typed output, packing, the cache,
per-request errors, the queue's token limit, a cancel, prices, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel
from services import example_recipe, run_quietly

import headrace as hr
from headrace.errors import PipelineError, StorageError
from headrace.llm.tier.ledger import Ledger
from headrace.sim import SimServer, serve

FAST = hr.llm.BatchTier(max_requests=10, gather=0.05, poll=0.05)


class Verdict(BaseModel):
    tone: str
    score: int


def _records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:03d}", "text": f"record number {i}"} for i in range(n)]


def _judge(sim: SimServer, **options: Any) -> Any:
    client = hr.llm.Client(
        base_url=sim.url,
        retry=options.pop("retry", hr.Retry(attempts=6, backoff=0.01)),
        prices={"sim-chat": hr.llm.Price(input=1.0, output=2.0)},
    )
    return hr.llm.transduce(
        Verdict,
        client=client,
        model="sim-chat",
        instructions="Judge the tone.",
        template="Judge: {{ text }}",
        tier=options.pop("tier", FAST),
        **options,
    )


def test_typed_packed_answers_into_parquet_at_half_the_price(tmp_path: Path) -> None:
    with serve(batch_turnaround_s=0.1) as sim:
        step = _judge(sim, pack=4)
        sink = hr.write_parquet(tmp_path / "out.parquet")
        result = run_quietly(hr.with_input(step), _records(30), sink=sink, run_dir=tmp_path / "run")
        bill = sim.stats()["batch"]
    table = pq.read_table(tmp_path / "out.parquet")
    assert result.items_out == 30 and sorted(table.column("id").to_pylist()) == [
        r["id"] for r in _records(30)
    ]
    assert set(table.column_names) >= {"tone", "score"}
    stats = result.metrics.steps[0].llm
    assert stats is not None
    # 30 items packed four to a request: 8 requests, in batches of at most 10
    assert bill["billed_requests"] == stats.requests == 8
    intents = Ledger(tmp_path / "run").intents()
    assert sum(len(i.requests) for i in intents) == 8 and bill["creates"] == len(intents)
    assert (stats.prompt_tokens, stats.completion_tokens) == (
        bill["billed_prompt_tokens"],
        bill["billed_completion_tokens"],
    )
    online = (bill["billed_prompt_tokens"] * 1.0 + bill["billed_completion_tokens"] * 2.0) / 1e6
    assert stats.cost_usd == pytest.approx(online / 2)
    assert stats.batch_requests == 8 and stats.online_cost_usd == pytest.approx(online)
    assert f"8 from batches (online: ${online:.4f})" in result.summary()


def test_per_request_errors_are_retried_in_later_batches_or_become_dead_letters(
    tmp_path: Path,
) -> None:
    with serve(batch_turnaround_s=0.05, batch_error_rate=0.3) as sim:
        retried = run_quietly(_judge(sim), _records(40), run_dir=tmp_path / "retried")
        bill = sim.stats()["batch"]
        assert retried.items_out == 40 and bill["billed_requests"] == 40
        assert bill["creates"] > 4  # the failed requests went again in later batches
        sim.reset()
        once = run_quietly(
            _judge(sim, retry=hr.Retry(attempts=1)),
            _records(40),
            run_dir=tmp_path / "once",
        )
    assert 0 < once.items_dead < 40 and once.items_out + once.items_dead == 40
    assert "simulated server error" in once.dead_letters[0].message


def test_a_cache_hit_never_enters_a_batch(tmp_path: Path) -> None:
    cache = hr.Cache(["sqlite"], path=tmp_path / "cache.sqlite")
    with serve(batch_turnaround_s=0.05) as sim:
        first = run_quietly(_judge(sim, cache=cache), _records(12), run_dir=tmp_path / "a")
        creates = sim.stats()["batch"]["creates"]
        again = run_quietly(_judge(sim, cache=cache), _records(12), run_dir=tmp_path / "b")
        assert sim.stats()["batch"]["creates"] == creates == 2
    assert first.items_out == again.items_out == 12
    hits = again.metrics.steps[0].cache
    assert hits is not None and sum(hits.hits.values()) == 12


def test_the_queue_token_limit_is_learned_and_later_batches_fit(tmp_path: Path) -> None:
    # a batch of ten requests holds 260 input tokens; the queue holds 400: the first
    # batch fits, the two made beside it (30 requests may wait at once; each batch
    # leaves full) before anything was learned are refused, and no batch after
    full = hr.llm.BatchTier(max_requests=10, gather=30, poll=0.05)
    with serve(batch_turnaround_s=1.5, batch_queue_tokens=400) as sim:
        step = _judge(sim, concurrency=30, tier=full)
        result = run_quietly(step, _records(30), run_dir=tmp_path / "run")
        bill = sim.stats()["batch"]
    assert result.items_out == 30 and bill["billed_requests"] == 30
    states = [i.state for i in Ledger(tmp_path / "run").intents()]
    assert 1 <= bill["failed_validation"] == states.count("refused") <= 2  # never again
    assert states.count("collected") >= 3


def test_a_batch_cancelled_at_the_provider_goes_again(tmp_path: Path) -> None:
    with serve(batch_turnaround_s=1.0) as sim:
        outcome: list[Any] = []
        run = threading.Thread(
            target=lambda: outcome.append(
                run_quietly(_judge(sim), _records(10), run_dir=tmp_path / "run")
            )
        )
        run.start()
        provider = openai.OpenAI(base_url=sim.url, api_key="sim", max_retries=0)
        for _ in range(400):
            batches = list(provider.batches.list())
            if batches:
                break
            time.sleep(0.02)
        provider.batches.cancel(batches[0].id)
        run.join(timeout=120)
        bill = sim.stats()["batch"]
    assert outcome and outcome[0].items_out == 10
    assert bill["cancels"] == 1 and bill["creates"] == 2 and bill["billed_requests"] == 10


def test_what_the_batch_tier_refuses_says_why(tmp_path: Path) -> None:
    with serve() as sim:
        client = hr.llm.Client(base_url=sim.url)
        with pytest.raises(PipelineError, match="give the run a run_dir"):
            run_quietly(_judge(sim), _records(2))
        with pytest.raises(PipelineError, match="give the run a run_dir"):  # a file is not
            run_quietly(_judge(sim), _records(2), sink=hr.write_jsonl(tmp_path / "s.jsonl"))
        with pytest.raises(PipelineError, match="cannot be streamed"):
            hr.llm.complete(client=client, model="m", prompt="{text}", stream=True, tier="batch")
        with pytest.raises(
            PipelineError, match="the batch tier is for chat requests, not embeddings"
        ):
            hr.llm.embed(client=client, model="e", tier="batch")
        with pytest.raises(PipelineError, match="tier must be 'online', 'flex', 'batch'"):
            hr.llm.complete(client=client, model="m", prompt="{text}", tier="priority")


def test_a_tampered_ledger_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    with serve(batch_turnaround_s=0.05) as sim:
        run_quietly(_judge(sim), _records(3), run_dir=tmp_path / "run")
        [record] = (tmp_path / "run" / "batches").glob("*.json")
        data = json.loads(record.read_text())
        data["batch_id"] = "../../etc/passwd"
        record.write_text(json.dumps(data))
        with pytest.raises(StorageError, match=rf"{record.name}: field 'batch_id' is damaged"):
            run_quietly(_judge(sim), _records(4), run_dir=tmp_path / "run")


def test_a_recipe_on_the_batch_tier_from_the_command_line(tmp_path: Path) -> None:
    recipe, env = example_recipe(tmp_path)
    with serve(process=True, batch_turnaround_s=0.2) as sim:
        command = ["headrace", "run", str(recipe), "--set", f"models.reader.base_url={sim.url}"]
        command += ["--run-dir", str(tmp_path / "run"), "--tier", "batch"]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        bill = sim.stats()["batch"]
        assert sim.stats()["requests"] == 0  # nothing went to the online endpoint
        refused = subprocess.run(
            ["headrace", "run", str(recipe), "--tier", "priority"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
    listings = (recipe.parent / "listings.jsonl").read_text().splitlines()
    assert bill["creates"] >= 1 and bill["billed_requests"] == -(-len(listings) // 8)  # packs
    assert (tmp_path / "run" / "batches").is_dir()
    assert (
        refused.returncode == 2
        and "'online', 'flex', 'batch' or 'auto', not 'priority'" in refused.stderr
    )


def test_anthropics_message_batches_answer_typed_output_and_a_lost_create_is_found(
    tmp_path: Path,
) -> None:
    with serve(batch_turnaround_s=0.1, batch_lose_creates=1, batch_error_rate=0.2) as sim:
        client = hr.llm.Client(
            base_url=sim.url,
            batch_api="anthropic",
            retry=hr.Retry(attempts=6, backoff=0.01),
            prices={"sim-chat": hr.llm.Price(input=3.0, output=15.0)},
        )
        step = hr.llm.transduce(
            Verdict, client=client, model="sim-chat", instructions="Judge.", tier=FAST
        )
        result = run_quietly(hr.with_input(step), _records(25), run_dir=tmp_path / "run")
        bill = sim.stats()["batch"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "outputs.jsonl").open()]
    assert result.items_out == len(rows) == 25 and {"id", "tone", "score"} <= set(rows[0])
    intents = Ledger(tmp_path / "run").intents()
    # the first create's answer was lost: its batch was found by its time and size, not
    # created again; the requests that errored went again in later batches
    assert bill["creates"] == len({i.batch_id for i in intents}) and bill["creates_lost"] == 1
    assert bill["billed_requests"] == 25 and bill["billed_again"] == 0
    stats = result.metrics.steps[0].llm
    assert stats is not None and stats.prompt_tokens == bill["billed_prompt_tokens"]


def test_a_budget_commits_each_batchs_bound_and_submits_none_past_it(tmp_path: Path) -> None:
    with serve(batch_turnaround_s=0.05) as sim:
        step = _judge(sim, max_tokens=50, concurrency=30)
        # a request's bound: ~60 prompt tokens at $1/M and 50 completion at $2/M, halved
        stopped = run_quietly(
            step, _records(30), run_dir=tmp_path / "run", budget=hr.Budget(usd=0.0012)
        )
        billed = sim.stats()["batch"]["billed_requests"]
        assert stopped.stopped and "budget" in stopped.stopped
        assert 0 < stopped.items_out == billed < 30  # what was committed, and no more
        stats = stopped.metrics.steps[0].llm
        assert stats is not None and stats.cost_usd <= 0.0012
        finished = run_quietly(step, _records(30), run_dir=tmp_path / "run")
        bill = sim.stats()["batch"]
    assert finished.items_out == 30 - stopped.items_out
    assert bill["billed_requests"] == 30 and bill["billed_again"] == 0


def test_the_report_shows_what_came_from_batches(tmp_path: Path) -> None:
    import re

    from typer.testing import CliRunner

    from headrace.cli import app

    with serve(batch_turnaround_s=0.05) as sim:
        result = run_quietly(_judge(sim), _records(12), run_dir=tmp_path / "run")
    stats = result.metrics.steps[0].llm
    assert stats is not None
    answer = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert answer.exit_code == 0, answer.output
    html = (tmp_path / "run" / "report.html").read_text()
    shown = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', html))
    assert shown["batch"] == f"12 requests (online ${stats.online_cost_usd:,.4f})"


def test_a_learned_queue_limit_is_shared_through_redis_and_a_damaged_one_ignored(
    tmp_path: Path, redis_url: str
) -> None:
    import redis

    key = f"queue-{uuid.uuid4().hex[:8]}"
    stored = f"headrace:batch-queue:{key}:sim-chat"
    full = hr.llm.BatchTier(max_requests=10, gather=30, poll=0.05)
    with serve(batch_turnaround_s=1.0, batch_queue_tokens=400) as sim:

        def judge() -> Any:
            rate = hr.Rate(requests=100_000, per="minute", shared=redis_url, key=key)
            client = hr.llm.Client(base_url=sim.url, rate=rate, retry=hr.Retry(attempts=6))
            return hr.llm.transduce(
                Verdict, client=client, model="sim-chat", instructions="Judge.",
                tier=full, concurrency=30,
            )  # fmt: skip

        first = run_quietly(judge(), _records(30), run_dir=tmp_path / "first")
        refused = sim.stats()["batch"]["failed_validation"]
        learned = int(redis.Redis.from_url(redis_url).get(stored) or 0)
        # another process of the cluster (here: another run) sizes its batches to it at once
        second = run_quietly(judge(), _records(30), run_dir=tmp_path / "second")
        assert sim.stats()["batch"]["failed_validation"] == refused  # no refusal more
        redis.Redis.from_url(redis_url).set(stored, "not a number")
        third = run_quietly(judge(), _records(10), run_dir=tmp_path / "third")
    assert refused >= 1 and 0 < learned < 400
    assert first.items_out == second.items_out == 30 and third.items_out == 10


def test_processes_sharing_a_queue_limit_hold_their_batches_and_never_overfill_it(
    tmp_path: Path, redis_url: str
) -> None:
    import redis

    key = f"queue-{uuid.uuid4().hex[:8]}"
    stored = f"headrace:batch-queue:{key}:sim-chat"
    shared = redis.Redis.from_url(redis_url)
    shared.set(stored, 300)  # learned before: one batch of ten (~260 tokens) fits, not two
    shared.hset(f"{stored}:held", "damaged", "lots")  # a damaged hold is left out
    full = hr.llm.BatchTier(max_requests=10, gather=30, poll=0.05)
    with serve(batch_turnaround_s=1.0, batch_queue_tokens=400) as sim:

        def judge(folder: str) -> None:
            rate = hr.Rate(requests=100_000, per="minute", shared=redis_url, key=key)
            client = hr.llm.Client(base_url=sim.url, rate=rate, retry=hr.Retry(attempts=6))
            step = hr.llm.transduce(
                Verdict, client=client, model="sim-chat", instructions="Judge.",
                tier=full, concurrency=10,
            )  # fmt: skip
            done.append(run_quietly(step, _records(10), run_dir=tmp_path / folder))

        done: list[hr.RunResult] = []
        runs = [threading.Thread(target=judge, args=(f"run{i}",)) for i in range(2)]
        for run in runs:  # two processes of a cluster at once (here: two runs)
            run.start()
        for run in runs:
            run.join()
        bill = sim.stats()["batch"]
    assert [r.items_out for r in done] == [10, 10]
    assert bill["failed_validation"] == 0 and bill["creates"] == 2  # one waited for room
    assert shared.hkeys(f"{stored}:held") == [b"damaged"]  # both holds given back


def test_the_spend_committed_to_a_batch_in_flight_is_in_the_time_series_and_status(
    tmp_path: Path,
) -> None:
    import re

    from typer.testing import CliRunner

    from headrace.cli import app
    from headrace.store.sqlite import SqliteRunStore

    run_dir = tmp_path / "run"
    shown: list[str] = []
    with serve(batch_turnaround_s=4.0) as sim:  # the series writes a row each second
        step = _judge(sim, max_tokens=50)
        running = threading.Thread(
            target=run_quietly,
            args=(step, _records(10)),
            kwargs={"run_dir": run_dir, "budget": hr.Budget(usd=1.0)},
        )
        running.start()
        while running.is_alive():  # `headrace status` while the batch is at the provider
            if (run_dir / "run.sqlite").exists():
                shown.append(CliRunner().invoke(app, ["status", str(run_dir)]).output)
            time.sleep(0.2)
        running.join()
    store = SqliteRunStore.in_dir(run_dir)
    try:
        held = [row.data["budget"]["committed_usd"] for row in store.samples()]
    finally:
        store.close()
    assert max(held) > 0  # the batch's bound, held while the provider worked on it
    assert held[-1] == 0  # settled at what its answers cost
    committed = [float(m[1]) for out in shown if (m := re.search(r"\$([\d.]+) committed", out))]
    assert max(committed) > 0
    final = CliRunner().invoke(app, ["status", str(run_dir)]).output
    assert re.search(r"spend     \$0\.\d+ so far, \$0\.0000 committed", final), final
