"""Graph overhead: the same four steps as an ``hr.graph`` (a recipe's shape) and as a composition.

``prepare -> [left, right] -> join`` per item: one step, a fan-out to two steps,
and a fan-in step that takes both outputs. Reference: the same steps written
``prepare >> (left | right) >> merge >> join`` (``hr.parallel``), measured in
the same process run. Every step awaits ``asyncio.sleep(0)``, so the engine's
own work dominates. Prints one JSON line.

    python bench/graph.py [--items 50000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from typing import Any

import headrace as hr


def steps() -> dict[str, hr.Step[Any, Any]]:
    async def prepare(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def left(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def right(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def join(parts: dict[str, int]) -> int:
        await asyncio.sleep(0)
        return parts["left"] + parts["right"]

    return {
        name: hr.step(fn, name=name, concurrency=64)
        for name, fn in (("prepare", prepare), ("left", left), ("right", right), ("join", join))
    }


def timed(pipeline: hr.Step[Any, Any], items: int) -> float:
    gc.collect()
    started = time.perf_counter()
    result = hr.run(pipeline, range(items), progress=False)
    elapsed = time.perf_counter() - started
    assert result.items_out == items
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    s = steps()
    graph = hr.graph(s, ["prepare -> [left, right]", "[left, right] -> join"])
    composed = s["prepare"] >> hr.parallel(left=s["left"], right=s["right"]) >> s["join"]
    graph_s, composed_s = [], []
    for _ in range(args.repeats):
        composed_s.append(timed(composed, args.items))
        graph_s.append(timed(graph, args.items))
    best_graph, best_composed = min(graph_s), min(composed_s)
    print(
        json.dumps(
            {
                "bench": "graph",
                "items": args.items,
                "graph_s": round(best_graph, 3),
                "composed_s": round(best_composed, 3),
                "graph_vs_composed": round(best_graph / best_composed, 3),
                "graph_us_per_item": round(best_graph / args.items * 1e6, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
