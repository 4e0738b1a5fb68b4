"""``tier="auto"`` against a deadline: 20,000 items, a provider whose batches take
``--turnaround`` seconds and whose online path is held to ``--rpm``.

Against ``headrace sim`` in a child process (no flex: each request by batch or
online). Three runs of the same items, durable, gpt-4o-mini's list price: all online
(the reference), auto with a deadline of ``--deadline`` seconds (between the online
run's time and twice the batch turnaround: a batch fits, but not with room for
everything), and auto with no deadline (every request by batch). Reported for each:
cost, wall time, the share of requests each tier took, the requests rescued from
batches; for the deadline run whether the deadline was met, and its cost as a ratio
of the cheapest schedule that met the deadline in hindsight (every request by batch,
when the batch ended in time). Prints one JSON line.

    python bench/auto_tier.py [--items 20000] [--turnaround 20] [--rpm 24000] [--deadline 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve


class Label(BaseModel):
    label: str


def _run(url: str, items: list[dict[str, Any]], tier: Any, **options: Any) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url, rate=hr.Rate(requests=options.pop("rpm")))
    step = hr.llm.transduce(
        Label, client=client, model="gpt-4o-mini", instructions="Label it.", fields=["text"],
        tier=tier,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        started = time.time()
        result = hr.run(step, items, run_dir=Path(folder) / "run", progress=False, **options)
        ended = time.time()
    assert result.items_out == len(items), result.summary()
    stats = result.metrics.step(step.name).llm
    assert stats is not None
    return {
        "cost_usd": round(stats.cost_usd, 6),
        "wall_s": round(ended - started, 2),
        "batch_share": round(stats.batch_requests / stats.requests, 4),
        "online_share": round(1 - stats.batch_requests / stats.requests, 4),
        "rescued": stats.rescued,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--turnaround", type=float, default=20.0)
    parser.add_argument("--rpm", type=float, default=24_000)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    items = [{"id": i, "text": f"order {i} arrived two days late"} for i in range(args.items)]
    batches = hr.llm.BatchTier(gather=0.5, poll=0.5)
    auto = hr.llm.AutoTier(batch=batches, flex=None, turnaround=1.5 * args.turnaround)
    with serve(process=True, latency_ms=20.0, batch_turnaround_s=args.turnaround) as sim:
        online = _run(sim.url, items, "online", rpm=args.rpm)
        sim.reset()
        deadline = _run(sim.url, items, auto, rpm=args.rpm, deadline=args.deadline)
        deadline["billed_per_item"] = round(
            (sim.stats()["ok"] + sim.stats()["batch"]["billed_requests"]) / args.items, 4
        )
        sim.reset()
        roomy = _run(sim.url, items, auto, rpm=args.rpm)
    cheapest = roomy["cost_usd"] if roomy["wall_s"] <= args.deadline else online["cost_usd"]
    print(
        json.dumps(
            {
                "bench": "auto_tier",
                "items": args.items,
                "turnaround_s": args.turnaround,
                "rpm": args.rpm,
                "deadline_s": args.deadline,
                "online": online,
                "auto_deadline": deadline,
                "auto_no_deadline": roomy,
                "deadline_met": deadline["wall_s"] <= args.deadline,
                "cost_vs_online": round(deadline["cost_usd"] / online["cost_usd"], 3),
                "cost_vs_cheapest_in_hindsight": round(deadline["cost_usd"] / cheapest, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
