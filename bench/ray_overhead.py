"""Engine overhead on Ray: a trivial async step over 200,000 items, durable to a JSON
Lines file, on the local backend and on ``hr.Ray`` (2 workers, local Ray of 2 CPUs)
at several shard sizes.

Reports microseconds an item for each, and each Ray run's ratio to the local run
measured in the same invocation. Ray's start-up (``ray.init`` and a first run that
starts its worker processes) is outside the timings. A shard costs a child run
(its store, lease and sink part) and a task round trip; the shard size at which
the per-item time stops falling is where Ray's cost is spread thin.

Prints one JSON line.  ``python bench/ray_overhead.py [--items 200000] [--store URL]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import headrace as hr


@hr.step(concurrency=64)
async def trivial(item: dict[str, int]) -> dict[str, int]:
    await asyncio.sleep(0)
    return item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--store", default=None, help="a postgresql:// run store")
    arguments = parser.parse_args()
    import ray

    items = [{"id": n} for n in range(arguments.items)]
    report: dict[str, object] = {"bench": "ray_overhead", "items": arguments.items}
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)

        def timed(name: str, **options: object) -> float:
            started = time.perf_counter()
            result = hr.run(trivial, items, key="id", sink=hr.write_jsonl(where / f"{name}.jsonl"),
                            run_dir=where / f"{name}-{uuid.uuid4().hex[:8]}",
                            run_store=arguments.store, progress=False, **options)  # fmt: skip
            assert result.items_out == arguments.items
            return time.perf_counter() - started

        local_s = timed("local")
        report["local_us_per_item"] = round(local_s / arguments.items * 1e6, 2)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        hr.run(trivial, items[:2], key="id", run_dir=where / "startup", progress=False,
               backend=hr.Ray(workers=2))  # fmt: skip
        for shard_size in (5_000, 25_000, 100_000):
            ray_s = timed(f"ray{shard_size}", backend=hr.Ray(workers=2, shard_size=shard_size))
            report[f"ray_{shard_size}_us_per_item"] = round(ray_s / arguments.items * 1e6, 2)
            report[f"ray_{shard_size}_vs_local"] = round(ray_s / local_s, 3)
        ray.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
