"""A cache on a cluster: the Redis tier is shared by every worker, so what one run on Ray
computed is not asked of the provider again by the next, whichever worker has the item."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import headrace as hr
from headrace.sim import serve

pytestmark = pytest.mark.slow

ITEMS = 60


def test_a_second_run_on_other_workers_answers_every_item_from_the_redis_tier(
    local_ray: None, redis_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "records.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"r{i:03d}", "text": f"record {i}"}) + "\n" for i in range(ITEMS))
    )
    # memory is each worker's own, so a hit in a fresh worker can only come from Redis
    cache = hr.Cache(["memory", redis_url], version=uuid.uuid4().hex)
    with serve(process=True) as sim:
        client = hr.llm.Client(base_url=sim.url)
        step = hr.llm.complete(client=client, model="m", prompt="{text}", cache=cache)

        def run(name: str) -> list[str]:
            hr.run(
                step,
                hr.read_jsonl(source, key="id"),
                run_dir=tmp_path / name,
                backend=hr.Ray(workers=2, shard_size=ITEMS // 4),
                progress=False,
            )
            return (tmp_path / name / "outputs.jsonl").read_text().splitlines()

        cold = run("cold")
        asked = sim.stats()["requests"]
        warm = run("warm")
        asked_again = sim.stats()["requests"]
    # every item was asked (more than once where a busy machine made a worker retry or a
    # shard run again), and the second run asked nothing
    assert asked >= ITEMS and asked_again == asked
    assert sorted(warm) == sorted(cold)  # a shard writes in the order items finish
