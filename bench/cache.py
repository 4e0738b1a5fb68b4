"""The cache: 10,000 items through a step that sleeps 50 ms, 64 at once.

Measured in one invocation (a fresh cache file and Redis key space each time):

- ``cold_s``: the cached step on a cold cache (every lookup a miss, every
  result stored), and ``uncached_s``: the same step with no cache. Their ratio
  is the cost of the cache on a 100% miss run (target: at most 1.10).
- warm re-runs: the same process and ``Cache`` (memory tier); a fresh process
  with the SQLite tier only; a fresh process with the Redis tier only. Each as
  the cold run's time over its own (target for SQLite: at least 50x).
- 50% duplicated inputs (each input twice, on a cold cache): calls made against
  distinct inputs (target: equal), counted, not timed.

Prints one JSON line.  ``python bench/cache.py [--items 10000] [--redis URL]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import headrace as hr


def sleeper(cache: hr.Cache | None, calls: list[int]) -> hr.FunctionStep[int, int]:
    @hr.step(cache=cache, concurrency=64, name="sleep50")
    async def sleep50(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.05)
        return x * x

    return sleep50


def timed(cache: hr.Cache | None, items: list[int]) -> tuple[float, int, hr.RunResult]:
    calls: list[int] = []
    result = hr.run(sleeper(cache, calls), items, progress=False)
    assert result.items_out == len(items), result.summary()
    return result.metrics.wall_s, len(calls), result


def child(tier: str, path: str, version: str, items: int) -> None:
    cache = hr.Cache([tier], path=path, version=version)
    wall, calls, _ = timed(cache, list(range(items)))
    assert calls == 0, f"a warm {tier} run made {calls} calls"
    print(json.dumps({"wall_s": wall}))


def in_fresh_process(tier: str, path: Path, version: str, items: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            tier,
            "--path",
            str(path),
            "--version",
            version,
            "--items",
            str(items),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child")
    parser.add_argument("--path")
    parser.add_argument("--version")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.version, args.items)
        return
    items = list(range(args.items))
    version = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.sqlite"
        uncached, _, _ = timed(None, items)
        cache = hr.Cache(["memory", "sqlite", args.redis], path=path, version=version)
        cold, cold_calls, _ = timed(cache, items)
        memory, memory_calls, _ = timed(cache, items)
        sqlite = in_fresh_process("sqlite", path, version, args.items)
        redis = in_fresh_process(args.redis, path, version, args.items)
        twice = [i // 2 for i in range(args.items)]
        dup_cache = hr.Cache(["memory", "sqlite"], path=Path(tmp) / "dup.sqlite")
        _, dup_calls, dup = timed(dup_cache, twice)
    stats = dup.metrics.step("sleep50").cache
    assert stats is not None
    print(
        json.dumps(
            {
                "bench": "cache",
                "items": args.items,
                "uncached_s": round(uncached, 3),
                "cold_s": round(cold, 3),
                "miss_overhead": round(cold / uncached, 4),
                "warm_memory_s": round(memory, 4),
                "warm_sqlite_fresh_process_s": round(sqlite, 4),
                "warm_redis_fresh_process_s": round(redis, 4),
                "speedup_memory": round(cold / memory, 1),
                "speedup_sqlite": round(cold / sqlite, 1),
                "speedup_redis": round(cold / redis, 1),
                "calls": {"cold": cold_calls, "warm_memory": memory_calls},
                "duplicates": {
                    "items": len(twice),
                    "distinct": len(set(twice)),
                    "calls": dup_calls,
                    "joined": stats.joins,
                    "hits": sum(stats.hits.values()),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
