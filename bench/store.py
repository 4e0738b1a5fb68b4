"""What durability costs: the engine-overhead workload with the run store and a JSONL sink.

100k items through one trivial async step (concurrency 64): (a) in memory, with
outputs dropped by a callback sink; (b) durable, with the SQLite run store and a
JSONL file sink, committing in batches. Same process run. Prints one JSON line.
With ``--run-store postgresql://...`` the durable run keeps its store there instead.

    python bench/store.py [--items 100000] [--run-store URL]
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
from headrace.store import StoreLocation


@hr.step(concurrency=64)
async def trivial(x: int) -> int:
    await asyncio.sleep(0)
    return x


def in_memory(n_items: int) -> float:
    started = time.perf_counter()
    result = hr.run(trivial, range(n_items), sink=lambda out: None, progress=False)
    assert result.items_out == n_items
    return time.perf_counter() - started


def durable(n_items: int, where: Path, run_store: str | None) -> float:
    run_dir = where / f"run-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    result = hr.run(
        trivial,
        range(n_items),
        sink=hr.write_jsonl(where / "out.jsonl"),
        run_dir=run_dir,
        run_store=run_store,
        key=lambda x: x,
        progress=False,
    )
    elapsed = time.perf_counter() - started
    assert result.items_out == n_items
    if run_store is not None:  # leave the shared database as it was
        store = StoreLocation(run_dir, run_store).open()
        store.discard()
        store.close()
    return elapsed


def main(n_items: int, run_store: str | None = None) -> dict[str, object]:
    memory_s = min(in_memory(n_items) for _ in range(2))
    times = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as where:
            times.append(durable(n_items, Path(where), run_store))
    durable_s = min(times)
    return {
        "bench": "store",
        "items": n_items,
        "run_store": "postgresql" if run_store else "sqlite",
        "in_memory_us_per_item": round(memory_s / n_items * 1e6, 3),
        "durable_us_per_item": round(durable_s / n_items * 1e6, 3),
        "ratio": round(durable_s / memory_s, 3),
        "target_ratio": 3.0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--run-store", default=None, help="a postgresql:// run store")
    args = parser.parse_args()
    print(json.dumps(main(args.items, args.run_store)))
