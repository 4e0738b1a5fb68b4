"""LLM client overhead: 2,000 ``hr.llm.complete`` calls vs. a hand-written aiohttp pool.

Against ``headrace sim`` in a child process (no limits, lognormal latency with a
median of 100 ms drawn from a hash of each request, so both sides see the same
latencies), 64 requests at once. The hand-written pool posts the very request
bodies the ``complete`` step builds and parses the JSON; headrace renders the
prompt, sends it through the client (budget, rate, retry gates, all unset but
on the path), reads the answer and counts tokens and cost. Reported: each side's
throughput against the achievable time, headrace's throughput over the pool's,
and client CPU per request (``time.process_time``; the sim runs elsewhere),
best of ``--repeats``. Prints one JSON line.

    python bench/llm_latency.py [--items 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from latency_bound import SLOTS, achievable, worker_pool

import headrace as hr
from headrace.sim import SimConfig, serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = SimConfig(latency_ms=100, latency_sigma=args.sigma, repeatable=True)
    records = [{"text": f"item {i}: " + " ".join(["lorem"] * 20)} for i in range(args.items)]
    ours: list[tuple[float, float]] = []
    pool: list[tuple[float, float]] = []
    with serve(config, process=True) as sim:
        client = hr.llm.Client(base_url=sim.url, connections=SLOTS)
        step = hr.llm.complete(
            client=client,
            model="sim-chat",
            prompt="Summarise: {text}",
            max_tokens=64,
            concurrency=SLOTS,
        )
        bodies = [step.request(record) for record in records]
        ideal = achievable([config.latency_of(body) for body in bodies])
        for _ in range(args.repeats):
            cpu = time.process_time()
            wall = asyncio.run(worker_pool(sim.url, bodies))
            pool.append((wall, time.process_time() - cpu))
            cpu = time.process_time()
            result = hr.run(step, records, progress=False)
            ours.append((result.metrics.wall_s, time.process_time() - cpu))
            assert result.items_out == args.items, result.summary()
    best_ours = min(ours)
    best_pool = min(pool)
    cpu_ours = min(c for _, c in ours) / args.items
    cpu_pool = min(c for _, c in pool) / args.items
    print(
        json.dumps(
            {
                "bench": "llm_latency",
                "items": args.items,
                "achievable_s": round(ideal, 3),
                "headrace_s": round(best_ours[0], 3),
                "worker_pool_s": round(best_pool[0], 3),
                "headrace_of_achievable": round(ideal / best_ours[0], 4),
                "worker_pool_of_achievable": round(ideal / best_pool[0], 4),
                "throughput_vs_pool": round(best_pool[0] / best_ours[0], 4),
                "cpu_ms_per_request": round(cpu_ours * 1e3, 4),
                "pool_cpu_ms_per_request": round(cpu_pool * 1e3, 4),
                "cpu_vs_pool": round(cpu_ours / cpu_pool, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
