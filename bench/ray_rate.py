"""Rate-limited on Ray: 1,500 chat requests against a sim at 6,000 rpm (burst 100),
split over 4 Ray actors that share one limit in Redis.

Each actor runs its shard (375 items) through ``hr.llm.complete`` with
``hr.Rate(requests=6000, per="minute", burst=100, shared=REDIS, key=...)``; the
sim answers in 100 ms. The ideal spends the burst at once and the rest at 100/s:
(1500 - 100) / 100 = 14 s, plus one latency. ``of_ideal`` is that over the span
the sim saw, from the first request's arrival to the last answer (the actors'
start-up is reported apart as ``startup_s``: the wall time before the first
request). The reference, measured in the same run: the same requests from one
process under the same limit kept in that process (``local_of_ideal``). The
targets: ``of_ideal`` at least 0.97 with at most 1% of the requests answered 429.

Needs Redis (``--redis``, default ``redis://127.0.0.1:6379/0``). Prints one JSON line.

    python bench/ray_rate.py [--items 1500] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import headrace as hr
from headrace.sim import serve

RPM, BURST, LATENCY_MS = 6000, 100, 100


def _records(path: Path, n: int) -> Path:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": f"r{i:05d}", "text": f"item {i}: lorem ipsum"}) + "\n")
    return path


def _pipeline(url: str, rate: hr.Rate) -> Any:
    client = hr.llm.Client(base_url=url, rate=rate, retry=hr.Retry(attempts=8), circuit=False)
    return hr.llm.complete(client=client, model="sim-chat", prompt="{text}", concurrency=32)


def _span_s(stats: dict[str, Any]) -> float:
    """From the window of the first arrival to the end of the window of the last answer."""
    window = stats["window_s"]
    arrived, ok = stats["windows"]["arrived"], stats["windows"]["ok"]
    first = next(i for i, count in enumerate(arrived) if count)
    last = max(i for i, count in enumerate(ok) if count)
    return (last + 1 - first) * window


def _measure(url: str, sim: Any, source: Path, run_dir: Path, **run: Any) -> dict[str, Any]:
    sim.reset()
    started = time.perf_counter()
    result = hr.run(run.pop("step"), hr.read_jsonl(source, key="id"), run_dir=run_dir,
                    progress=False, **run)  # fmt: skip
    wall = time.perf_counter() - started
    stats = sim.stats()
    span = _span_s(stats)
    return {
        "wall_s": round(wall, 3),
        "span_s": round(span, 3),
        "startup_s": round(max(0.0, wall - span), 3),
        "succeeded": result.metrics.items_out,
        "throttled_429s": stats["throttled"],
        "throttled_share": round(stats["throttled"] / max(1, stats["requests"]), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    arguments = parser.parse_args()
    import ray

    ideal = (arguments.items - BURST) / (RPM / 60) + LATENCY_MS / 1e3
    with (
        tempfile.TemporaryDirectory() as scratch,
        serve(rpm=RPM, burst=BURST, latency_ms=LATENCY_MS, process=True) as sim,
    ):
        where = Path(scratch)
        source = _records(where / "records.jsonl", arguments.items)
        alone = hr.Rate(requests=RPM, per="minute", burst=BURST)
        local = _measure(sim.url, sim, source, where / "local", step=_pipeline(sim.url, alone))
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        shared = hr.Rate(requests=RPM, per="minute", burst=BURST, shared=arguments.redis,
                         key=f"bench-{uuid.uuid4().hex[:8]}")  # fmt: skip
        workers = arguments.workers
        backend = hr.Ray(workers=workers, num_cpus=2 / workers,
                         shard_size=-(-arguments.items // workers))  # fmt: skip
        on_ray = _measure(sim.url, sim, source, where / "ray", step=_pipeline(sim.url, shared),
                          backend=backend)  # fmt: skip
        ray.shutdown()
    print(
        json.dumps(
            {
                "bench": "ray_rate",
                "items": arguments.items,
                "workers": workers,
                "ideal_s": round(ideal, 3),
                "of_ideal": round(ideal / on_ray["span_s"], 4),
                "local_of_ideal": round(ideal / local["span_s"], 4),
                "ray": on_ray,
                "local": local,
            }
        )
    )


if __name__ == "__main__":
    main()
