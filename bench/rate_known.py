"""Rate-limited, limit known: 1,500 chat requests against a sim at 6,000 rpm, burst 100.

The sim answers in 100 ms; the step runs 64 calls at once under
``hr.Rate(requests=6000, per="minute", burst=100)`` and ``hr.Retry(attempts=8)``.
The ideal wall time spends the burst at once and the rest at 100/s:
(1500 - 100) / 100 = 14 s, plus one latency for the last answer. Reports
successes/s over the ideal, and the 429s the sim answered. Prints one JSON line.

    python bench/rate_known.py [--items 1500]
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
    args = parser.parse_args()
    rate = hr.Rate(requests=RPM, per="minute", burst=BURST)
    with serve(rpm=RPM, burst=BURST, latency_ms=LATENCY_MS, process=True) as sim:
        result, wall = run(
            sim.url,
            chat_items(args.items),
            lambda session, url: chat_step(
                session, url, concurrency=64, rate=rate, retry=hr.Retry(attempts=8)
            ),
        )
        stats = sim.stats()
    ideal = (args.items - BURST) / (RPM / 60) + LATENCY_MS / 1e3
    print(json.dumps(outcome("rate_known", result, wall, stats, ideal)))


if __name__ == "__main__":
    main()
