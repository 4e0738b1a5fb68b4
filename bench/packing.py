"""Request packing: 2,000 short classification items, ``pack=1`` vs. ``pack=10``.

Against ``headrace sim`` in a child process with a token-per-minute limit, which
the client's ``hr.Rate`` keeps (so the run is bound by tokens, as a real
classification job at a provider is). Each request carries the same
instructions (a realistic 70-word labelling guide); packing sends them once per
ten items instead of once per item. Reported for each: requests, prompt and
completion tokens, items dropped by the model and sent again alone, wall time;
and the ratios packed / unpacked. Prints one JSON line.

    python bench/packing.py [--items 2000] [--tpm 600000]
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal

from pydantic import BaseModel

import headrace as hr
from headrace.sim import serve

GUIDE = (
    "Label the sentiment of the customer message. Use positive when the customer is "
    "satisfied, thanks the team or praises the product; negative when they complain, "
    "report a fault, ask for a refund or threaten to leave; neutral for questions, "
    "order updates and anything without a clear feeling. Judge the message as a whole, "
    "not single words, and ignore greetings and signatures."
)


class Label(BaseModel):
    label: Literal["positive", "negative", "neutral"]


def run(url: str, items: list[dict[str, Any]], pack: int, tpm: float) -> dict[str, Any]:
    client = hr.llm.Client(base_url=url, rate=hr.Rate(tokens=tpm, per="minute"))
    step = hr.llm.transduce(
        Label, client=client, model="sim-chat", instructions=GUIDE, fields=["text"], pack=pack
    )
    result = hr.run(step, items, progress=False)
    assert result.items_out == len(items), result.summary()
    stats = result.metrics.step(step.name).llm
    assert stats is not None
    return {
        "requests": stats.requests,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "solo_retries": stats.solo_retries,
        "wall_s": round(result.metrics.wall_s, 3),
        "throttled": result.metrics.step(step.name).throttled,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--tpm", type=float, default=600_000)
    parser.add_argument("--drop", type=float, default=0.02, help="rate of the sim's drop fault")
    args = parser.parse_args()
    items = [{"id": i, "text": f"order {i} arrived two days late"} for i in range(args.items)]
    with serve(tpm=args.tpm, latency_ms=50, faults={"drop": args.drop}, process=True) as sim:
        single = run(sim.url, items, 1, args.tpm)
        sim.reset()
        packed = run(sim.url, items, 10, args.tpm)
    tokens = {
        name: r["prompt_tokens"] + r["completion_tokens"]
        for name, r in (("1", single), ("10", packed))
    }
    print(
        json.dumps(
            {
                "bench": "packing",
                "items": args.items,
                "tpm": args.tpm,
                "pack_1": single,
                "pack_10": packed,
                "requests_ratio": round(packed["requests"] / single["requests"], 4),
                "tokens_ratio": round(tokens["10"] / tokens["1"], 4),
                "wall_ratio": round(packed["wall_s"] / single["wall_s"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
