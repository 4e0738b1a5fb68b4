"""Collecting batch results: finished batches' answers committed to Parquet, against the
durable online path over the same items.

``headrace sim`` in a child process turns batches around in 0.5 s; the batch tier
takes up to 50,000 requests a batch (several in flight), and a run of
``--items`` items (1,000,000 is the issue's figure; 100,000 by default, which
this 2-core machine runs in minutes) is committed to a Parquet sink. Reported:
items/s of the batch run (upload, turnaround and collection included) and of the
online run (each item its own request), and their ratio. Prints one JSON line.

    python bench/batch_collect.py [--items 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import headrace as hr
from headrace.sim import serve


def _run(url: str, n: int, tier: Any, folder: Path, concurrency: int) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url)
    step = hr.llm.complete(
        client=client, model="sim-chat", prompt="{text}", tier=tier, concurrency=concurrency
    )
    items = ({"id": i, "text": f"item {i}"} for i in range(n))
    started = time.perf_counter()
    result = hr.run(
        hr.with_input(step, field="answer"),
        items,
        sink=hr.write_parquet(folder / "out.parquet"),
        run_dir=folder / "run",
        progress=False,
    )
    wall = time.perf_counter() - started
    assert result.items_out == n, result.summary()
    return {"wall_s": round(wall, 3), "items_per_s": round(n / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    tier = hr.llm.BatchTier(gather=0.5, poll=0.5)
    with serve(process=True, batch_turnaround_s=0.5) as sim, tempfile.TemporaryDirectory() as d:
        batch = _run(sim.url, args.items, tier, Path(d) / "batch", 4 * tier.max_requests)
        online = _run(sim.url, args.items, "online", Path(d) / "online", 64)
        billed = sim.stats()["batch"]["billed_requests"]
    print(
        json.dumps(
            {
                "bench": "batch_collect",
                "items": args.items,
                "batch": {**batch, "billed_per_item": round(billed / args.items, 4)},
                "online": online,
                "batch_vs_online": round(batch["items_per_s"] / online["items_per_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
