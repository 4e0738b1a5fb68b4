"""``hr.estimate`` against the run it estimates: 20,000 items, a pilot of 200.

Against ``headrace sim`` in a child process (20 ms answers, a rate limit of 30,000
requests a minute given to the client), texts of very different lengths. Reported:
the pilot's wall time as a share of the full run's, and the estimate's error
against what the full run really cost and took (p50), and whether p10-p90 held
them. Prints one JSON line.

    python bench/estimate.py [--items 20000] [--sample 200] [--seeds 10]

With ``--seeds N``, N pilots (seeds 0 to N-1) against the one full run: how many of
their p10-p90 intervals held its real cost and wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve


class Label(BaseModel):
    label: str


def _step(url: str) -> Any:
    client = hr.llm.Client(
        base_url=url,
        rate=hr.Rate(requests=30_000),
        prices={"sim-chat": hr.llm.Price(input=0.15, output=0.60)},
    )
    return hr.llm.transduce(
        Label, client=client, model="sim-chat", instructions="Label it.", fields=["text"]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=1, help="pilots with seeds 0, 1, ...")
    args = parser.parse_args()
    items = [
        {"id": i, "text": "word " * (3 + (i * 37) % 60 + i * 40 // args.items)}
        for i in range(args.items)
    ]
    with serve(process=True, latency_ms=20.0) as sim:
        started = time.perf_counter()
        found = hr.estimate(_step(sim.url), items, sample=args.sample)
        pilot_s = time.perf_counter() - started
        others = [
            hr.estimate(_step(sim.url), items, sample=args.sample, seed=seed)
            for seed in range(1, args.seeds)
        ]
        sim.reset()
        result = hr.run(_step(sim.url), items, progress=False)
    stats = result.metrics.steps[0].llm
    assert stats is not None and result.items_out == args.items
    online = found.tiers["online"]
    assert online.cost_usd is not None
    cost, wall = stats.cost_usd, result.metrics.wall_s
    print(
        json.dumps(
            {
                "bench": "estimate",
                "items": args.items,
                "sample": args.sample,
                "pilot_s": round(pilot_s, 3),
                "run_s": round(wall, 3),
                "pilot_share_of_run": round(pilot_s / wall, 4),
                "cost_usd": round(cost, 6),
                "cost_estimate": online.cost_usd.to_dict(),
                "cost_error": round(abs(online.cost_usd.p50 - cost) / cost, 4),
                "cost_covered": online.cost_usd.covers(cost),
                "wall_estimate": online.wall_s.to_dict(3),
                "wall_error": round(abs(online.wall_s.p50 - wall) / wall, 4),
                "wall_covered": online.wall_s.covers(wall),
                "seeds": args.seeds,
                "seeds_cost_covered": sum(
                    e.tiers["online"].cost_usd.covers(cost)  # type: ignore[union-attr]
                    for e in [found, *others]
                ),
                "seeds_wall_covered": sum(
                    e.tiers["online"].wall_s.covers(wall) for e in [found, *others]
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
