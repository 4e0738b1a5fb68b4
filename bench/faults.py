"""Faults: 5% 503s and 1% hangs; every item ends as an output or a dead letter with its cause.

1,000 chat requests against a sim answering in 20 ms, with ``hr.Retry(attempts=3)``
and a 1 s timeout per call (a hung call times out and is retried). Reports how
the items ended, the dead letters' causes, and whether any item was lost
(items in != outputs + dead letters). Prints one JSON line.

    python bench/faults.py [--items 1000]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from provider import chat_items, chat_step, run

import headrace as hr
from headrace.sim import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    with serve(latency_ms=20, faults={"503": 0.05, "hang": 0.01}, hang_s=30, process=True) as sim:
        result, wall = run(
            sim.url,
            chat_items(args.items),
            lambda session, url: chat_step(
                session, url, concurrency=64, timeout=1.0, retry=hr.Retry(attempts=3, budget=None)
            ),
        )
        stats = sim.stats()
    metrics = result.metrics
    causes = Counter(d.error_type for d in result.dead_letters)
    print(
        json.dumps(
            {
                "bench": "faults",
                "items": args.items,
                "outputs": metrics.items_out,
                "dead": metrics.items_dead,
                "lost": args.items - metrics.items_out - metrics.items_dead,
                "dead_causes": dict(causes),
                "retries": metrics.step("chat").retries,
                "sim_faults": stats["faults"],
                "wall_s": round(wall, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
