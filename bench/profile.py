"""What ``headrace profile`` costs the run it watches, and what it sees.

A durable run of ``--items`` items through (a) a trivial async step (the engine's
own cost is all there is to slow down) and (b) a thread step that spends about a
millisecond in Python per item, each without the stack sampler (the reference) and
with it at 5 ms. Repeats alternate; the best of each is compared. For (b) it also
reports the share of the worker threads' sampled time that landed in the step's own
code. Prints one JSON line.

    python bench/profile.py [--items 100000] [--cpu-items 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import headrace as hr
from headrace.tune.profile import StackSampler, step_code


@hr.step(concurrency=64)
async def touch(x: int) -> int:
    await asyncio.sleep(0)
    return x


@hr.step(executor="thread", concurrency=2)
def burn(n: int) -> int:
    total = 0
    for i in range(20_000):
        total += i * n % 7
    return total


def timed(root: Any, items: int, *, sampled: bool) -> tuple[float, float]:
    """Seconds the run took, and the share of thread time in the steps' own code."""
    run_dir = Path(tempfile.mkdtemp(prefix="profile-bench-"))
    try:
        started = time.perf_counter()
        if not sampled:
            hr.run(root, range(items), run_dir=run_dir, progress=False)
            return time.perf_counter() - started, 0.0
        with StackSampler(step_code(root), threading.get_ident(), 0.005) as seen:
            hr.run(root, range(items), run_dir=run_dir, progress=False)
        took = time.perf_counter() - started
        own = sum(s for place, s in seen.threads.items() if place.startswith("step "))
        return took, own / (sum(seen.threads.values()) or 1.0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--cpu-items", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    share = 0.0
    for _ in range(args.repeats):
        for name, root, items in (("async", touch, args.items), ("thread", burn, args.cpu_items)):
            for sampled in (False, True):
                key = f"{name}_{'sampled' if sampled else 'plain'}_s"
                took, own = timed(root, items, sampled=sampled)
                best[key] = min(best.get(key, took), took)
                if sampled and name == "thread":
                    share = max(share, own)
    print(
        json.dumps(
            {
                "bench": "profile",
                "items": args.items,
                "cpu_items": args.cpu_items,
                **{k: round(v, 3) for k, v in best.items()},
                "async_sampled_vs_plain": round(best["async_sampled_s"] / best["async_plain_s"], 3),
                "thread_sampled_vs_plain": round(
                    best["thread_sampled_s"] / best["thread_plain_s"], 3
                ),
                "thread_time_in_step_code": round(share, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
