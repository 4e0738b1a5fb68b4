"""A durable run on the auto tier for the kill tests, run in a subprocess.

    python auto_job.py SIM_URL RUN_DIR OUTPUT ITEMS DEADLINE_S

Batches the plan expects back in 2 s (the simulator takes longer): as the deadline
nears, the watchdog cancels them and sends what they left online.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

import headrace as hr


class Verdict(BaseModel):
    tone: str
    score: int


def main() -> None:
    url, run_dir, output, items, deadline = sys.argv[1:6]
    client = hr.llm.Client(base_url=url, retry=hr.Retry(attempts=4, backoff=0.01))
    tier = hr.llm.AutoTier(
        batch=hr.llm.BatchTier(max_requests=50, gather=0.05, poll=0.05),
        turnaround="2s",
        latency="0.5s",
        flex=None,
    )
    step = hr.llm.transduce(
        Verdict,
        client=client,
        model="sim-chat",
        instructions="Judge the tone.",
        template="Judge: {{ text }}",
        tier=tier,
    )
    records = [{"id": f"r{i:03d}", "text": f"record number {i}"} for i in range(int(items))]
    hr.run(
        hr.with_input(step),
        records,
        key="id",
        sink=hr.write_jsonl(output),
        run_dir=run_dir,
        deadline=float(deadline),
        progress=False,
    )


if __name__ == "__main__":
    main()
