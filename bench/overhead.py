"""Engine overhead: 100k items through trivial async steps vs. a hand-written worker pool.

(a) one step that awaits asyncio.sleep(0); (b) three such steps in sequence; all
at concurrency 64; (c) for comparison, one step whose calls pass its gate
(a retry, a circuit and a rate limit it never reaches). Reference: 64 asyncio
workers on a queue doing the same awaits, measured in the same process run; for
context, also asyncio.gather over one coroutine per item under a Semaphore.
Prints one JSON line.

    python bench/overhead.py [--items 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

import headrace as hr

CONCURRENCY = 64


async def worker_pool(n_items: int, awaits: int) -> float:
    """The floor: a plain pool of asyncio workers pulling from a bounded queue."""
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=CONCURRENCY * 2)
    out: list[int] = []

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            for _ in range(awaits):
                await asyncio.sleep(0)
            out.append(item)

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    for i in range(n_items):
        await queue.put(i)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    assert len(out) == n_items
    return elapsed


async def gather_semaphore(n_items: int, awaits: int) -> float:
    """What users write by hand today: one coroutine per item, a semaphore, gather."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: int) -> int:
        async with limit:
            for _ in range(awaits):
                await asyncio.sleep(0)
            return item

    started = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n_items)))
    elapsed = time.perf_counter() - started
    assert len(out) == n_items
    return elapsed


def make_step(name: str, guarded: bool = False) -> hr.Step[int, int]:
    async def trivial(x: int) -> int:
        await asyncio.sleep(0)
        return x

    if not guarded:
        return hr.step(trivial, name=name, concurrency=CONCURRENCY)
    # every call through the gate: a retry, a circuit and a rate limit it never reaches
    return hr.step(
        trivial,
        name=name,
        concurrency=CONCURRENCY,
        retry=hr.Retry(),
        circuit=hr.Circuit(),
        rate=hr.Rate(requests=1e9, per="second", burst=1e9),
    )


async def headrace_run(n_items: int, steps: int, guarded: bool = False) -> float:
    pipeline: hr.Step[int, int] = make_step("s0", guarded)
    for i in range(1, steps):
        pipeline = pipeline >> make_step(f"s{i}", guarded)
    started = time.perf_counter()
    result = await hr.arun(pipeline, range(n_items), progress=False)
    elapsed = time.perf_counter() - started
    assert result.items_out == n_items
    return elapsed


async def best_of(repeats: int, fn, *args) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        gc.collect()
        times.append(await fn(*args))
    return min(times)


async def main(n_items: int, repeats: int) -> dict[str, object]:
    figures: dict[str, object] = {"bench": "overhead", "items": n_items, "concurrency": CONCURRENCY}
    for steps, target in ((1, 2.0), (3, 3.0)):
        pool = await best_of(repeats, worker_pool, n_items, steps)
        ours = await best_of(repeats, headrace_run, n_items, steps)
        gathered = await best_of(repeats, gather_semaphore, n_items, steps)
        figures[f"steps_{steps}"] = {
            "pool_us_per_item": round(pool / n_items * 1e6, 3),
            "headrace_us_per_item": round(ours / n_items * 1e6, 3),
            "ratio": round(ours / pool, 3),
            "target_ratio": target,
            "gather_semaphore_ratio": round(gathered / pool, 3),
        }
    # the policy path: one step whose calls pass its gate (no target: for comparison)
    pool = await best_of(repeats, worker_pool, n_items, 1)
    guarded = await best_of(repeats, headrace_run, n_items, 1, True)
    figures["steps_1_guarded"] = {
        "pool_us_per_item": round(pool / n_items * 1e6, 3),
        "headrace_us_per_item": round(guarded / n_items * 1e6, 3),
        "ratio": round(guarded / pool, 3),
    }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.items, args.repeats))))
