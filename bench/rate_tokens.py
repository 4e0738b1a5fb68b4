"""Token-limited: a TPM limit that binds before the RPM limit, prompts of mixed sizes.

The sim accepts 6,000 rpm and 600,000 tpm (burst one second of each), answers in
100 ms and charges prompt plus completion tokens; the prompts are 1x to 8x a
base length and the completions vary too. The step runs 64 calls at once under
``hr.Rate(requests=6000, tokens=600_000)``, which estimates each call's tokens
and reconciles them with the usage returned. The ceiling is the tokens the sim
served, less the burst, at 10,000 a second, plus one latency. Prints one JSON line.

    python bench/rate_tokens.py [--items 800]
"""

from __future__ import annotations

import argparse
import json

from provider import chat_items, chat_step, outcome, run

import headrace as hr
from headrace.sim import serve

RPM, TPM, LATENCY_MS = 6000, 600_000, 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=800)
    args = parser.parse_args()
    rate = hr.Rate(requests=RPM, tokens=TPM, per="minute")
    with serve(rpm=RPM, tpm=TPM, latency_ms=LATENCY_MS, process=True) as sim:
        result, wall = run(
            sim.url,
            chat_items(args.items, mixed=True),
            lambda session, url: chat_step(
                session, url, concurrency=64, rate=rate, retry=hr.Retry(attempts=8)
            ),
        )
        stats = sim.stats()
    tokens = stats["prompt_tokens"] + stats["completion_tokens"]
    ceiling = (tokens - TPM / 60) / (TPM / 60) + LATENCY_MS / 1e3
    report = outcome("rate_tokens", result, wall, stats, ceiling)
    report["tokens"] = tokens
    print(json.dumps(report))


if __name__ == "__main__":
    main()
