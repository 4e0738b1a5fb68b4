"""How full packed requests leave at high concurrency, when the run's window is the limit.

The first-hour user's job: ``transduce(pack=8)`` at concurrency 64 with
``run.concurrency: 64`` (the window), against ``headrace sim`` with 200 ms
latency, behind a step that hands items on at about 200 a second (so a pack of
8 takes 40 ms to gather, longer than ``pack_wait``). Only 64 items can be in flight, so at
most 8 full packs; the question is whether requests leave full or half empty
on their timer. Reported: requests, mean items per request, requests sent by
timer, wall time; and, as the reference measured in the same run, the same
job with the window at ``pack x concurrency`` (512). Prints one JSON line.

    python bench/pack_fill.py [--items 800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, Literal

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve


class Label(BaseModel):
    label: Literal["positive", "negative", "neutral"]


@hr.step(concurrency=2)
async def parse(record: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # items reach the LLM step at ~200/s: 8 take 40 ms
    return record


def job(url: str, items: list[dict[str, Any]], window: int) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url)
    tone = hr.llm.transduce(
        Label, client=client, model="m", fields=["text"], pack=8, concurrency=64, name="tone"
    )
    result = hr.run(parse >> tone, items, window=window, progress=False)
    step = result.metrics.step("tone")
    llm = step.llm
    assert llm is not None and result.items_out == len(items)
    return {
        "window": window,
        "requests": llm.requests,
        "mean_pack": round(llm.packed_items / max(1, llm.packed_requests), 2),
        "sent_by": dict(sorted(step.flushes.items())),
        "wall_s": round(result.metrics.wall_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=800)
    args = parser.parse_args()
    items = [{"id": n, "text": f"message {n} about the order"} for n in range(args.items)]
    with serve(latency_ms=200, process=True) as sim:
        bound = job(sim.url, items, window=64)
        sim.reset()
        wide = job(sim.url, items, window=512)
    print(
        json.dumps(
            {
                "bench": "pack_fill",
                "items": args.items,
                "window_64": bound,
                "window_512": wide,
                "fill_64": round(bound["mean_pack"] / 8, 3),
                "requests_vs_ideal_64": round(bound["requests"] / -(-args.items // 8), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
