"""One provider limit for the whole cluster: four Ray actors calling ``headrace sim``
under one ``hr.Rate(shared=...)`` (given, or learned with ``Rate.auto``) stay under
the sim's limit together."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.sim import serve

pytestmark = pytest.mark.slow

RPM, BURST, ITEMS = 1200, 5, 160


def _on_four_actors(
    tmp_path: Path, step: Any, shard_size: int = ITEMS // 4, **options: Any
) -> hr.RunResult:
    """Run ``step`` over ITEMS records on four actors (half a CPU each)."""
    source = tmp_path / "records.jsonl"
    if not source.exists():
        source.write_text(
            "".join(
                json.dumps({"id": f"r{i:04d}", "text": f"record {i}"}) + "\n" for i in range(ITEMS)
            )
        )
    return hr.run(
        step,
        hr.read_jsonl(source, key="id"),
        run_dir=tmp_path / "run",
        backend=hr.Ray(workers=4, num_cpus=0.5, shard_size=shard_size),
        progress=False,
        **options,
    )


def _arrivals(stats: dict[str, Any]) -> tuple[int, float]:
    """The requests the sim saw arrive, and the time from the first to the last (in
    its 100 ms windows)."""
    arrived: list[int] = stats["windows"]["arrived"]
    busy = [i for i, count in enumerate(arrived) if count]
    return sum(arrived), (busy[-1] - busy[0] + 1) * float(stats["window_s"])


@pytest.mark.parametrize("learned", [False, True], ids=["given", "auto"])
def test_four_actors_sharing_one_redis_limit_stay_under_the_providers_limit(
    local_ray: None, redis_url: str, tmp_path: Path, learned: bool
) -> None:
    key = f"test-{uuid.uuid4().hex[:8]}"
    rate = (
        hr.Rate.auto(shared=redis_url, key=key)
        if learned
        else hr.Rate(requests=RPM, per="minute", burst=BURST, shared=redis_url, key=key)
    )
    with serve(rpm=RPM, burst=BURST, process=True) as sim:
        client = hr.llm.Client(
            base_url=sim.url, rate=rate, retry=hr.Retry(attempts=20, backoff=0.05)
        )
        step = hr.llm.complete(client=client, model="m", prompt="{text}", concurrency=40)
        result = _on_four_actors(tmp_path, step)
        stats = sim.stats()
    lines = (tmp_path / "run" / "outputs.jsonl").read_text().splitlines()
    assert len(lines) == ITEMS and result.metrics.items_out == ITEMS
    # One limit for the four actors: over the whole run the sim saw at most the limit's
    # rate times the run's span, plus one bucket (four actors pacing alone would send
    # four times the rate, finishing in a quarter of the time). Counted over the whole
    # run, not per second: on a busy machine (CI) a stalled process's requests arrive
    # bunched, which shifts them between seconds but not out of the run.
    sent, span_s = _arrivals(stats)
    bucket = RPM / 60 if learned else BURST  # a learned limit holds one second of its rate
    seen = f"{sent} requests in {span_s:.1f} s, 429s {stats['throttled']}: {stats}"
    assert sent <= RPM / 60 * span_s + bucket + 4, seen
    # 429s: a learned limit is unknown until an actor's first answer, and until then
    # each actor probes with a window growing one per success; a given one draws a few
    # where the sim's bucket and the shared one refill on different clocks. How many
    # depends on the machine's load (two busy loops on the two cores: 33 given, 110
    # learned), so the bound is only what four limits of their own do not meet: they
    # sent 339 requests in 7.9 s and drew 179 429s (measured with shared= left out); a
    # given one drew 81 with the machine twice over-busy (a pytest and busy loops beside)
    assert stats["throttled"] < ITEMS, seen


def test_a_budget_holds_across_four_actors_and_a_resume_finishes_the_run(
    local_ray: None, redis_url: str, tmp_path: Path
) -> None:
    budget = hr.Budget(tokens=3000, shared=redis_url)
    with serve(process=True) as sim:
        client = hr.llm.Client(base_url=sim.url)
        step = hr.llm.complete(client=client, model="m", prompt="{text}", concurrency=2)
        first = _on_four_actors(tmp_path, step, ITEMS // 8, budget=budget)
        # stopped: the shards' files stay for the resume (only a whole run drops them)
        assert (tmp_path / "run" / "outputs.jsonl.shards").is_dir()
        stats = sim.stats()
        spent = stats["prompt_tokens"] + stats["completion_tokens"]
        per_call = spent / stats["requests"]
        second = _on_four_actors(tmp_path, step, ITEMS // 8, resume=True)
        calls = sim.stats()["requests"]
    assert first.stopped is not None and "3,000 tokens" in first.stopped
    # one budget for the four actors: at most the calls in flight (two an actor) cross it
    assert 3000 - 8 * per_call <= spent <= 3000 + 8 * per_call
    assert first.items_out == stats["requests"] < ITEMS
    assert second.stopped is None
    assert calls == ITEMS  # nothing computed twice
    assert len((tmp_path / "run" / "outputs.jsonl").read_text().splitlines()) == ITEMS
    assert not (tmp_path / "run" / "outputs.jsonl.shards").exists()


def test_a_budget_kept_in_one_process_is_refused_on_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(hr.PipelineError, match="keeps its budget in Redis"):
        hr.run(
            hr.step(lambda x: x),
            [1, 2],
            run_dir=tmp_path / "run",
            backend=hr.Ray(),
            budget=hr.Budget(usd=1),
        )


def test_four_actors_share_one_adaptive_concurrency_limit(
    local_ray: None, redis_url: str, tmp_path: Path
) -> None:
    """Calls in flight across four actors, counted in Redis: one shared limit of 8 holds
    them to 8 (and one slot an actor that the others' shares leave none for)."""
    import ray_pipelines
    import redis

    key = f"test-{uuid.uuid4().hex[:8]}"
    step = ray_pipelines.counted(redis_url, key, shared=True)
    result = run_quietly(
        step,
        [{"id": f"r{i}"} for i in range(400)],
        key="id",
        run_dir=tmp_path / "run",
        backend=hr.Ray(workers=4, num_cpus=0.5, shard_size=50),
    )
    assert result.items_out == 400
    client = redis.Redis.from_url(redis_url)
    try:
        peak = int(client.get(f"{key}:peak") or 0)
        assert 2 <= peak <= 8 + 3
        assert client.zcard(f"headrace:concurrency:{key}:members") == 0  # every shard left
    finally:
        client.close()
