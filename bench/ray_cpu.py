"""A CPU-bound pure-Python step (about 5 ms an item) on Ray against this process.

2,000 items by default, each a durable run to a JSON Lines file: the local backend
(one process: the step holds the GIL, so one core) against ``hr.Ray`` with 2
workers on a local Ray of 2 CPUs. Start-up is reported apart: ``ray_init_s``
(starting the local Ray) is outside both timings; ``ray_s`` includes starting the
worker actors. Before it, a run of one item a worker starts Ray's worker processes
(``startup_s``, reported apart). The target on this 2-core machine: ``speedup``
(``local_s / ray_s``) at least 1.6.

Prints one JSON line.  ``python bench/ray_cpu.py [--items 2000] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import headrace as hr


@hr.step
def busy(item: dict[str, Any]) -> dict[str, Any]:
    """About 5 ms of pure-Python arithmetic."""
    total = 0
    for n in range(100_000):
        total += n * n % 7
    return {"id": item["id"], "work": total}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    import ray

    items = [{"id": n} for n in range(arguments.items)]
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        started = time.perf_counter()
        hr.run(busy, items, key="id", sink=hr.write_jsonl(where / "local.jsonl"),
               run_dir=where / "local", progress=False)  # fmt: skip
        local_s = time.perf_counter() - started
        started = time.perf_counter()
        ray.init(num_cpus=arguments.workers, include_dashboard=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - started
        started = time.perf_counter()  # start-up alone: a run of one item a worker
        hr.run(busy, items[: arguments.workers], key="id", run_dir=where / "startup",
               progress=False, backend=hr.Ray(workers=arguments.workers))  # fmt: skip
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        result = hr.run(busy, items, key="id", sink=hr.write_jsonl(where / "ray.jsonl"),
                        run_dir=where / "ray", progress=False,
                        backend=hr.Ray(workers=arguments.workers))  # fmt: skip
        ray_s = time.perf_counter() - started
        ray.shutdown()
        assert result.items_out == arguments.items
    print(
        json.dumps(
            {
                "bench": "ray_cpu",
                "items": arguments.items,
                "workers": arguments.workers,
                "local_s": round(local_s, 3),
                "ray_s": round(ray_s, 3),
                "ray_init_s": round(ray_init_s, 3),
                "startup_s": round(startup_s, 3),
                "local_ms_per_item": round(local_s / arguments.items * 1e3, 3),
                "speedup": round(local_s / ray_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
