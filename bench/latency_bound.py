"""Latency-bound: 2,000 requests, no limits, lognormal latency (median 100 ms), 64 at once.

The sim draws each request's latency from a hash of its body (``repeatable``),
so the achievable time is known: a zero-overhead pool of 64 slots taking the
items in order, each slot busy for exactly its item's latency. Measured in the
same run: headrace (one step, concurrency 64) and a hand-written pool of 64
aiohttp workers on a queue; each reported as the achievable time over its own
wall time (best of ``--repeats``). Prints one JSON line.

    python bench/latency_bound.py [--items 2000] [--sigma 0.5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import time
from typing import Any

import aiohttp
from provider import chat_items, chat_step, run

from headrace.sim import SimConfig, serve

SLOTS = 64


def achievable(latencies: list[float]) -> float:
    """The makespan of a zero-overhead pool of ``SLOTS`` slots taking items in order."""
    free = [0.0] * SLOTS
    end = 0.0
    for latency in latencies:
        start = heapq.heappop(free)
        end = max(end, start + latency)
        heapq.heappush(free, start + latency)
    return end


async def worker_pool(url: str, items: list[dict[str, Any]]) -> float:
    """What users write by hand: 64 aiohttp workers pulling from a queue."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    for _ in range(SLOTS):
        queue.put_nowait(None)
    outputs: list[Any] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                async with session.post(f"{url}/chat/completions", json=item) as response:
                    response.raise_for_status()
                    outputs.append(await response.json())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(SLOTS)))
        wall = time.perf_counter() - started
    assert len(outputs) == len(items)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = SimConfig(latency_ms=100, latency_sigma=args.sigma, repeatable=True)
    items = chat_items(args.items)
    ideal = achievable([config.latency_of(item) for item in items])
    ours: list[float] = []
    pool: list[float] = []
    with serve(config, process=True) as sim:
        for _ in range(args.repeats):
            pool.append(asyncio.run(worker_pool(sim.url, items)))
            result, wall = run(
                sim.url, items, lambda session, url: chat_step(session, url, concurrency=SLOTS)
            )
            assert result.metrics.items_out == args.items
            ours.append(wall)
    print(
        json.dumps(
            {
                "bench": "latency_bound",
                "items": args.items,
                "achievable_s": round(ideal, 3),
                "headrace_s": round(min(ours), 3),
                "worker_pool_s": round(min(pool), 3),
                "headrace_of_achievable": round(ideal / min(ours), 4),
                "worker_pool_of_achievable": round(ideal / min(pool), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
