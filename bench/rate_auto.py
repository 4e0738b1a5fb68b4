"""Limit unknown: the rate_known workload under ``hr.Rate.auto()``.

Same sim (6,000 rpm, burst 100, 100 ms) and 1,500 requests; the step reports
each answer's headers with ``hr.observe``. Reports successes/s over the same
ideal as rate_known, the 429s drawn, and the limit learned. ``--no-headers``
makes the step raise a bare ``hr.Throttled()`` on a 429 and report nothing, so
the limit must be learned from 429s alone. Prints one JSON line.

    python bench/rate_auto.py [--items 1500] [--no-headers]
"""

from __future__ import annotations

import argparse
import json

from provider import chat_items, chat_step, outcome, run

import headrace as hr
from headrace.sim import serve

RPM, BURST, LATENCY_MS = 6000, 100, 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--no-headers", action="store_true")
    args = parser.parse_args()
    headers = not args.no_headers
    rate = hr.Rate.auto()
    with serve(rpm=RPM, burst=BURST, latency_ms=LATENCY_MS, process=True) as sim:
        result, wall = run(
            sim.url,
            chat_items(args.items),
            lambda session, url: chat_step(
                session,
                url,
                observe=headers,
                headers=headers,
                concurrency=64,
                rate=rate,
                retry=hr.Retry(attempts=8),
            ),
        )
        stats = sim.stats()
    ideal = (args.items - BURST) / (RPM / 60) + LATENCY_MS / 1e3
    learned = rate.limit()["requests_per_minute"]
    report = outcome("rate_auto" + ("" if headers else "_no_headers"), result, wall, stats, ideal)
    report["learned_rpm"] = learned
    report["learned_from"] = rate.limit()["source"]
    report["learned_error"] = None if learned is None else round(abs(learned - RPM) / RPM, 4)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
