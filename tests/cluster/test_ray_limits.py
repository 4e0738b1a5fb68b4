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


def _run_on_four_actors(tmp_path: Path, url: str, rate: hr.Rate) -> hr.RunResult:
    client = hr.llm.Client(base_url=url, rate=rate, retry=hr.Retry(attempts=20, backoff=0.05))
    step = hr.llm.complete(client=client, model="m", prompt="{text}", concurrency=40)
    source = tmp_path / "records.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"r{i:04d}", "text": f"record {i}"}) + "\n" for i in range(ITEMS))
    )
    return hr.run(
        step,
        hr.read_jsonl(source, key="id"),
        run_dir=tmp_path / "run",
        backend=hr.Ray(workers=4, num_cpus=0.5, shard_size=ITEMS // 4),
        progress=False,
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
        result = _run_on_four_actors(tmp_path, sim.url, rate)
        stats = sim.stats()
    lines = (tmp_path / "run" / "outputs.jsonl").read_text().splitlines()
    assert len(lines) == ITEMS and result.metrics.items_out == ITEMS
    # the sum of the four actors' rates at the sim: one second holds at most the
    # limit and the burst (four actors pacing alone would send four times that)
    assert _busiest_second(stats) <= RPM / 60 + BURST + 2, stats["windows"]["arrived"]
    if learned:
        # before the first answer taught the limit, each actor sends a window of calls
        # that grows by one per success: a few 429s, never one per call past the burst
        assert stats["throttled"] <= 20
    else:
        assert stats["throttled"] <= 4
