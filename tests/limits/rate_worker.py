"""One process of the shared-limit test: a rate-limited run against a sim, its counts as JSON.

python rate_worker.py SIM_URL REDIS_URL|local KEY ITEMS START_AT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

import headrace as hr


async def main(url: str, shared: str, key: str, n: int, start_at: float) -> dict[str, Any]:
    rate = hr.Rate(
        requests=1200, per="minute", burst=5, shared=None if shared == "local" else shared, key=key
    )
    async with aiohttp.ClientSession() as session:

        @hr.step(name="chat", rate=rate, concurrency=n, retry=hr.Retry(attempts=20))
        async def chat(i: int) -> int:
            body = {"model": "m", "messages": [{"role": "user", "content": f"{key} {i}"}]}
            async with session.post(f"{url}/chat/completions", json=body) as response:
                response.raise_for_status()
            return i

        await asyncio.sleep(max(0.0, start_at - time.time()))  # both processes start together
        result = await hr.arun(chat, range(n), progress=False)
    step = result.metrics.step("chat")
    return {"out": result.metrics.items_out, "throttled": step.throttled}


if __name__ == "__main__":
    url, shared, key, n, start_at = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(url, shared, key, int(n), float(start_at)))))
