"""Peak memory streaming a Hugging Face ``IterableDataset`` of 100k vs 1M rows.

Each row is made by a generator (``IterableDataset.from_generator``: never held
whole), read through ``hr.read_dataset`` by one step, and dropped by a callback sink.
Rows are keyed by position: with ``key=`` the run also keeps every key it has seen,
to refuse a repeated one (``duplicates="error"``), which grows with the rows.
Each size runs in a fresh interpreter so peak RSS is its own. Prints one JSON line.

    python bench/dataset_memory.py [--small 100000] [--large 1000000]
"""

from __future__ import annotations

import argparse
import json

from memory import measure

CHILD = """
import json, resource, sys
import datasets
import headrace as hr

def rows(n):
    for i in range(n):
        yield {"id": f"r{i:07d}", "text": "x" * 193 + "%07d" % i}  # 200 characters

@hr.step(concurrency=64)
def measure(row):
    return len(row["text"])

n = int(sys.argv[1])
stream = datasets.IterableDataset.from_generator(rows, gen_kwargs={"n": n})
count = [0]
def sink(value):
    count[0] += 1

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = hr.run(measure, hr.read_dataset(stream), sink=sink, progress=False)
assert count[0] == n == result.items_out
print(json.dumps({"before_kib": before,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "items_per_s": result.metrics.items_per_s}))
"""


def main(small: int, large: int) -> dict[str, object]:
    a, b = measure(small, CHILD), measure(large, CHILD)
    return {
        "bench": "dataset_memory",
        "small_rows": small,
        "large_rows": large,
        "small_peak_rss_mib": round(a["peak_kib"] / 1024, 1),
        "large_peak_rss_mib": round(b["peak_kib"] / 1024, 1),
        "ratio": round(b["peak_kib"] / a["peak_kib"], 3),
        "items_per_s": {"small": round(a["items_per_s"]), "large": round(b["items_per_s"])},
        "target_ratio": 1.2,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(main(args.small, args.large)))
