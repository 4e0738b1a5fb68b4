"""Peak memory streaming 100k vs 1M items through two steps: bounded by the window.

Each item is a small dict with a 200-character string, made by a generator;
outputs go to a sink that drops them. Each size runs in a fresh interpreter so
peak RSS is its own. Prints one JSON line.

    python bench/memory.py [--small 100000] [--large 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import asyncio, json, resource, sys
import headrace as hr

@hr.step(concurrency=64)
async def tag(item):
    await asyncio.sleep(0)
    item["tagged"] = True
    return item

@hr.step(concurrency=64)
def measure(item):
    return len(item["text"])

def items(n):
    for i in range(n):
        yield {"id": i, "text": "x" * 194 + "%06d" % (i % 10**6)}  # 200 characters

count = [0]
def sink(value):
    count[0] += 1

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = hr.run(tag >> measure, items(int(sys.argv[1])), sink=sink, progress=False)
assert count[0] == int(sys.argv[1]) == result.items_out
print(json.dumps({"before_kib": before,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "items_per_s": result.metrics.items_per_s}))
"""


def measure(n_items: int, child: str = CHILD) -> dict[str, float]:
    """Run ``child`` over ``n_items`` in a fresh interpreter; its last line, as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", child, str(n_items)], capture_output=True, text=True, check=True
    ).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def main(small: int, large: int) -> dict[str, object]:
    a, b = measure(small), measure(large)
    return {
        "bench": "memory",
        "small_items": small,
        "large_items": large,
        "small_peak_rss_mib": round(a["peak_kib"] / 1024, 1),
        "large_peak_rss_mib": round(b["peak_kib"] / 1024, 1),
        "ratio": round(b["peak_kib"] / a["peak_kib"], 3),
        "growth_over_baseline_mib": {
            "small": round((a["peak_kib"] - a["before_kib"]) / 1024, 2),
            "large": round((b["peak_kib"] - b["before_kib"]) / 1024, 2),
        },
        "target_ratio": 1.2,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(main(args.small, args.large)))
