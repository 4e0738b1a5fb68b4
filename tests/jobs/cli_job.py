"""A pipeline for the CLI tests, loaded by import path (``cli_job:pipeline``)."""

import asyncio
import os

import headrace as hr


@hr.step(concurrency=4)
async def slow_double(row: dict[str, int]) -> dict[str, int]:
    await asyncio.sleep(0.005)
    if row["n"] % 50 == 7 and not os.environ.get("CLI_JOB_FIXED"):
        raise ValueError(f"{row['n']} is not allowed")
    return {"id": row["id"], "n2": row["n"] * 2}


pipeline = slow_double


@hr.step
def csv_double(row: dict[str, str]) -> dict[str, object]:
    """CSV fields are strings: convert in the first step."""
    return {"id": row["id"], "n": int(row["n"]), "n2": int(row["n"]) * 2}


from_csv = csv_double
