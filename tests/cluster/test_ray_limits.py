"""One provider limit for the whole cluster: four Ray actors calling ``headrace sim``
under one ``hr.Rate(shared=...)`` (given, or learned with ``Rate.auto``) stay under
the sim's limit together."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

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


def _busiest_second(stats: dict[str, Any]) -> int:
    """The most requests the sim saw arrive in any one second (ten 100 ms windows)."""
    arrived: list[int] = stats["windows"]["arrived"]
    return max(sum(arrived[i : i + 10]) for i in range(max(1, len(arrived) - 9)))


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
    # the sum of the four actors' rates at the sim: one second holds at most the
    # limit and the burst (four actors pacing alone would send four times that). A
    # learned limit does not know the provider's burst: its shared bucket holds one
    # second of the rate, which actors that start late may spend at once
    most = RPM / 60 + (RPM / 60 if learned else BURST) + 2
    assert _busiest_second(stats) <= most, str(stats["windows"]["arrived"])
    if learned:
        # before the first answer taught the limit, each actor sends a window of calls
        # that grows by one per success: a few 429s, never one per call past the burst
        assert stats["throttled"] <= 20
    else:
        assert stats["throttled"] <= 4


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
    result = hr.run(
        step,
        [{"id": f"r{i}"} for i in range(400)],
        key="id",
        run_dir=tmp_path / "run",
        backend=hr.Ray(workers=4, num_cpus=0.5, shard_size=50),
        progress=False,
    )
    assert result.items_out == 400
    client = redis.Redis.from_url(redis_url)
    try:
        peak = int(client.get(f"{key}:peak") or 0)
        assert 2 <= peak <= 8 + 3
        assert client.zcard(f"headrace:concurrency:{key}:members") == 0  # every shard left
    finally:
        client.close()
