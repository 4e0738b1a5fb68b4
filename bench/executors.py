"""Process executor vs. inline: a CPU-bound pure-Python step (~5 ms per item), 400 items.

Inline runs the function on the event loop; the process executor runs it in a
pool of 2 workers (items travel in chunks). Same process run. Prints one JSON line.

    python bench/executors.py [--items 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cpu_work

import headrace as hr


def timed(step: hr.Step[int, tuple[int, int]], n_items: int) -> tuple[float, list[tuple[int, int]]]:
    started = time.perf_counter()
    result = hr.run(step, range(n_items), progress=False, ordered=True)
    return time.perf_counter() - started, result.outputs


def main(n_items: int, workers: int) -> dict[str, object]:
    inline_s, inline_out = timed(hr.step(cpu_work.burn_and_pid), n_items)
    process_step = hr.step(cpu_work.burn_and_pid, executor="process", concurrency=workers)
    process_s, process_out = timed(process_step, n_items)
    assert [v for v, _ in inline_out] == [v for v, _ in process_out]
    per_item_ms = inline_s / n_items * 1e3
    return {
        "bench": "executors",
        "items": n_items,
        "workers": workers,
        "inline_ms_per_item": round(per_item_ms, 3),
        "inline_s": round(inline_s, 3),
        "process_s": round(process_s, 3),
        "speedup": round(inline_s / process_s, 3),
        "worker_pids_used": len({pid for _, pid in process_out}),
        "target_speedup": 1.7,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(main(args.items, args.workers)))
