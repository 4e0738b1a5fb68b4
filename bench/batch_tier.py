"""The batch tier against the online tier: 20,000 items, the same answers, half the cost.

Against ``headrace sim`` in a child process (batches turned around in 30 s). The
batch run is durable (a run folder holds its ledger); so is the online run, for a
like-for-like comparison. Reported for each: cost (at gpt-4o-mini's list price),
requests billed by the provider per item, wall time, and the driver's CPU time and
peak memory; for the batch run also the CPU it spent while it only waited for the
provider (from the first batch's submission to its end), as a share of that wait.
Prints one JSON line.

    python bench/batch_tier.py [--items 20000] [--turnaround 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve

PRICE = hr.llm.Price(input=0.15, output=0.60)


class Label(BaseModel):
    label: str


def _run(url: str, items: list[dict[str, Any]], tier: Any, run_dir: Path) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url, prices={"sim-chat": PRICE})
    step = hr.llm.transduce(
        Label, client=client, model="sim-chat", instructions="Label it.", fields=["text"],
        tier=tier,
    )  # fmt: skip
    cpu = time.process_time()
    result = hr.run(step, items, run_dir=run_dir, progress=False)
    assert result.items_out == len(items), result.summary()
    stats = result.metrics.step(step.name).llm
    assert stats is not None
    return {
        "cost_usd": round(stats.cost_usd, 6),
        "requests": stats.requests,
        "wall_s": round(result.metrics.wall_s, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


def _waiting_cpu(sim_url: str, done: threading.Event, out: dict[str, float]) -> None:
    """The process's CPU time while a batch is in progress at the provider."""
    import openai

    provider = openai.OpenAI(base_url=sim_url, api_key="sim", max_retries=0)
    while not done.is_set():
        batches = list(provider.batches.list(limit=1))
        if batches and batches[0].status == "in_progress":
            start_wall, start_cpu = time.monotonic(), time.process_time()
            while provider.batches.retrieve(batches[0].id).status == "in_progress":
                time.sleep(0.5)
            out["wait_s"] = time.monotonic() - start_wall
            out["wait_cpu_s"] = time.process_time() - start_cpu
            return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--turnaround", type=float, default=30.0)
    args = parser.parse_args()
    items = [{"id": i, "text": f"order {i} arrived two days late"} for i in range(args.items)]
    with (
        serve(process=True, batch_turnaround_s=args.turnaround) as sim,
        tempfile.TemporaryDirectory() as folder,
    ):
        online = _run(sim.url, items, "online", Path(folder) / "online")
        sim.reset()
        waiting: dict[str, float] = {}
        done = threading.Event()
        watcher = threading.Thread(target=_waiting_cpu, args=(sim.url, done, waiting))
        watcher.start()
        batch = _run(sim.url, items, hr.llm.BatchTier(gather=1.0), Path(folder) / "batch")
        done.set()
        watcher.join()
        billed = sim.stats()["batch"]
    batch["billed_per_item"] = round(billed["billed_requests"] / args.items, 4)
    batch["creates"] = billed["creates"]
    if waiting:
        # the watcher's own polling is in this figure: an upper bound of the run's
        batch["wait_s"] = round(waiting["wait_s"], 3)
        batch["wait_cpu_share"] = round(waiting["wait_cpu_s"] / waiting["wait_s"], 4)
    print(
        json.dumps(
            {
                "bench": "batch_tier",
                "items": args.items,
                "turnaround_s": args.turnaround,
                "online": online,
                "batch": batch,
                "cost_ratio": round(batch["cost_usd"] / online["cost_usd"], 4),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
