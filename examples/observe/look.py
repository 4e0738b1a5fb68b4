"""A durable run with a failing item and a thread step, to look at afterwards."""

import asyncio

import headrace as hr


@hr.step(concurrency=4)
async def fetch(n: int) -> dict[str, int]:
    await asyncio.sleep(0.002)
    if n % 100 == 42:
        raise ValueError(f"record {n} has no body")
    return {"n": n}


@hr.step(executor="thread", concurrency=2)
def clean(record: dict[str, int]) -> dict[str, int]:
    return {**record, "even": record["n"] % 2 == 0}


if __name__ == "__main__":
    result = hr.run(fetch >> clean, range(2000), run_dir="runs/look", progress=False)
    print(result.summary().splitlines()[0])
