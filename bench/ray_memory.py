"""The driver's memory on Ray: peak RSS of the driving process at 100k and 1M items.

Each size runs in a fresh interpreter that starts a local Ray (2 CPUs), writes a
JSON Lines file of small records, and runs a trivial step over it with
``hr.Ray(workers=2)`` into a JSON Lines sink. The driver holds the plan, the
shards' states and the merged metrics, never the items: its peak RSS should not
grow with the item count (``ratio``: 1M over 100k, the target about 1). The
workers' memory is theirs (each shard is a local run, bounded by its window).

Prints one JSON line.  ``python bench/ray_memory.py [--small 100000] [--large 1000000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
import ray
import headrace as hr

@hr.step
def tag(item):
    return {"id": item["id"], "size": len(item["text"])}

count = int(sys.argv[1])
with tempfile.TemporaryDirectory() as scratch:
    where = Path(scratch)
    with (where / "in.jsonl").open("w") as handle:
        for n in range(count):
            handle.write(json.dumps({"id": f"r{n:08d}", "text": "lorem ipsum " * 8}) + "\\n")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = hr.run(tag, hr.read_jsonl(where / "in.jsonl", key="id"),
                    sink=hr.write_jsonl(where / "out.jsonl"), run_dir=where / "run",
                    progress=False, backend=hr.Ray(workers=2))
    wall = time.perf_counter() - started
    assert result.items_out == count, result.summary()
    print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "before_kib": before, "wall_s": wall,
                      "shards": -(-count // hr.Ray(workers=2).shard_size_for(count))}))
    ray.shutdown()
"""


def _measure(count: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(count)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    arguments = parser.parse_args()
    small, large = _measure(arguments.small), _measure(arguments.large)
    print(
        json.dumps(
            {
                "bench": "ray_memory",
                "small_items": arguments.small,
                "large_items": arguments.large,
                "small_peak_rss_mib": round(small["peak_kib"] / 1024, 1),
                "large_peak_rss_mib": round(large["peak_kib"] / 1024, 1),
                "after_ray_init_mib": round(small["before_kib"] / 1024, 1),
                "ratio": round(large["peak_kib"] / small["peak_kib"], 3),
                "small_shards": small["shards"],
                "large_shards": large["shards"],
                "small_us_per_item": round(small["wall_s"] / arguments.small * 1e6, 2),
                "large_us_per_item": round(large["wall_s"] / arguments.large * 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
