"""A durable run of slow items, to watch, kill and resume:

python slow_job.py RUN_DIR ITEMS
"""

import asyncio
import sys

import headrace as hr


@hr.step(concurrency=4)
async def slow(x: int) -> dict[str, int]:
    await asyncio.sleep(0.01)
    return {"x": x}


if __name__ == "__main__":
    hr.run(slow, range(int(sys.argv[2])), run_dir=sys.argv[1], progress=False)
