"""A durable job for the rerun tests, run in a subprocess (and killed at random).

    python rerun_job.py RUN_DIR INPUT SINK_KIND OUTPUT CALLS_LOG VERSION [WHERE]

Version 1 runs the whole input (items with ``n % 50 == 13`` fail); version 2 with
WHERE reruns the items it chooses. Every call of the step appends "<pid> <key>" to
CALLS_LOG, after "session <pid> <n>" (the session number the job will get).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from chaos_job import make_sink

import headrace as hr
from headrace.store import StoreLocation

CALLS: int | None = None


def _log(text: str) -> None:
    assert CALLS is not None
    os.write(CALLS, (text + "\n").encode())


def pipeline(version: int) -> hr.Step[dict[str, object], dict[str, object]]:
    """The step at ``version`` (the version is part of its identity: a changed pipeline)."""

    @hr.step(concurrency=4, name="work", version=str(version))
    async def work(record: dict[str, object]) -> dict[str, object]:
        _log(f"{os.getpid()} {record['id']}")
        n = int(record["n"])  # type: ignore[call-overload]
        # version 2 slower: a rerun lasts long enough for kills to land inside it
        await asyncio.sleep((0.002 if version == 1 else 0.1) + (n * 7919 % 10) / 1000)
        if version == 1 and n % 50 == 13:
            raise ValueError(f"item {n} is poison")
        return {"square": n * n, "id": record["id"], "n": n, "v": version}

    return work


def main() -> None:
    global CALLS
    run_dir, source, sink_kind, output, calls, version = sys.argv[1:7]
    where = sys.argv[7] if len(sys.argv) > 7 else None
    CALLS = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    run_store = output.split(" ")[0] if sink_kind == "postgresql" else None
    location = StoreLocation(Path(run_dir), run_store)
    sessions = 0
    if location.exists():
        store = location.open()
        sessions = len(store.sessions())
        store.close()
    _log(f"session {os.getpid()} {sessions + 1}")
    options = {"run_dir": run_dir, "run_store": run_store, "progress": False}
    step, items = pipeline(int(version)), hr.read_jsonl(source, key="id")
    sink = make_sink(sink_kind, output)
    if where is None:
        hr.run(step, items, sink=sink, **options)
    else:
        hr.rerun(step, items, sink=sink, where=where, **options)


if __name__ == "__main__":
    main()
