"""The flex tier against the online tier: 20,000 items through a provider whose flex
answers slower and refuses a share of requests for lack of capacity.

Against ``headrace sim`` in a child process: online requests answered in
``--latency-ms``, flex ones in ``--flex-latency-ms``, ``--refusal-rate`` of flex
requests refused (OpenAI's 429 "resource unavailable"); the same rate limit for
both. Reported for each tier: cost (at gpt-5-mini's list price: genai-prices
carries its flex price), requests billed per item, wall time; for flex also the
refusals drawn per item, the requests sent online after ``refusals`` of them, and
the rate limit's throttles (a refusal must lower nothing: 0). Prints one JSON line.

    python bench/flex_tier.py [--items 20000] [--refusal-rate 0.2]
"""

from __future__ import annotations

import argparse
import json
import resource
from typing import Any

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve


class Label(BaseModel):
    label: str


def _run(url: str, items: list[dict[str, Any]], tier: Any) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url, rate=hr.Rate(requests=60_000))
    step = hr.llm.transduce(
        Label, client=client, model="gpt-5-mini", instructions="Label it.", fields=["text"],
        tier=tier,
    )  # fmt: skip
    result = hr.run(step, items, progress=False)
    assert result.items_out == len(items), result.summary()
    step_metrics = result.metrics.step(step.name)
    stats = step_metrics.llm
    assert stats is not None
    return {
        "cost_usd": round(stats.cost_usd, 6),
        "requests": stats.requests,
        "wall_s": round(result.metrics.wall_s, 3),
        "throttled": step_metrics.throttled,
        "flex_requests": stats.flex_requests,
        "refusals_per_item": round(stats.flex_refusals / len(items), 4),
        "sent_online": stats.flex_fallbacks,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--flex-latency-ms", type=float, default=60.0)
    parser.add_argument("--refusal-rate", type=float, default=0.2)
    args = parser.parse_args()
    items = [{"id": i, "text": f"order {i} arrived two days late"} for i in range(args.items)]
    with serve(
        process=True,
        latency_ms=args.latency_ms,
        flex_latency_ms=args.flex_latency_ms,
        flex_refusal_rate=args.refusal_rate,
    ) as sim:
        online = _run(sim.url, items, "online")
        online["billed_per_item"] = round(sim.stats()["ok"] / args.items, 4)
        sim.reset()
        flex = _run(sim.url, items, hr.llm.FlexTier(backoff=0.05))
        bill = sim.stats()
    flex["billed_per_item"] = round(bill["ok"] / args.items, 4)
    flex["refused_at_provider"] = bill["flex_refused"]
    print(
        json.dumps(
            {
                "bench": "flex_tier",
                "items": args.items,
                "refusal_rate": args.refusal_rate,
                "online": online,
                "flex": flex,
                "cost_ratio": round(flex["cost_usd"] / online["cost_usd"], 4),
                "wall_ratio": round(flex["wall_s"] / online["wall_s"], 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
