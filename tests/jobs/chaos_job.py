"""A durable job for the chaos test, run in a subprocess and killed at random.

    python chaos_job.py RUN_DIR INPUT SINK_KIND OUTPUT CALLS_LOG

Every call of the step appends "<pid> <key>" to CALLS_LOG (unbuffered), and the
job first appends "session <pid> <n>" with the session number it will get.
With ``HEADRACE_FREEZE_AT_WRITE=N`` the job stops itself (SIGSTOP) at its Nth
write to the sink, after the writer renewed its lease and before the write:
the moment a frozen session is most dangerous.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import headrace as hr
from headrace.store import StoreLocation

CALLS: int | None = None


def _log(text: str) -> None:
    assert CALLS is not None
    os.write(CALLS, (text + "\n").encode())


@hr.step(concurrency=4)
async def work(record: dict[str, object]) -> dict[str, object]:
    _log(f"{os.getpid()} {record['id']}")
    n = int(record["n"])  # type: ignore[call-overload]
    await asyncio.sleep(0.002 + (n * 7919 % 10) / 1000)
    if n % 97 == 13:
        raise ValueError(f"item {n} is poison")
    # columns whose sorted order differs from this one: a resume must keep this order
    return {"square": n * n, "id": record["id"], "n": n}


def keep(record: dict[str, object]) -> bool:
    return int(record["square"]) % 5 != 1  # type: ignore[call-overload]


pipeline = work >> hr.filter(keep)


def make_sink(kind: str, output: str) -> hr.io.DurableSink:
    """The sink under test; a SQL ``output`` is ``<url> <table>``."""
    if kind == "jsonl":
        return hr.write_jsonl(output)
    if kind == "csv":
        return hr.write_csv(output)
    if kind == "batches":
        return hr.write_batches(output, items_per_file=50)
    if kind == "parquet":
        return hr.write_parquet(output, items_per_file=50)
    url, table = output.split(" ")
    return hr.write_sql(url, table, key="id", batch_size=50)


def main() -> None:
    global CALLS
    run_dir, source, sink_kind, output, calls = sys.argv[1:6]
    CALLS = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    # the PostgreSQL sink's case keeps its run store in PostgreSQL too
    run_store = os.environ.get("HEADRACE_CHAOS_RUN_STORE") or (
        output.split(" ")[0] if sink_kind == "postgresql" else None
    )
    where = StoreLocation(Path(run_dir), run_store)
    existing = where.exists()
    sessions = 0
    if existing:
        store = where.open()
        sessions = store.status().sessions
        store.close()
    _log(f"session {os.getpid()} {sessions + 1}")
    sink = make_sink(sink_kind, output)
    freeze_at = int(os.environ.get("HEADRACE_FREEZE_AT_WRITE", "0"))
    if freeze_at:
        write, writes = sink.write, [0]

        def frozen_write(records: list[object], journal: bytes | None) -> dict[str, object]:
            writes[0] += 1
            if writes[0] == freeze_at:  # this thread stops before it returns (os.kill's
                # process-wide signal may be taken by another thread, this one going on)
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            return write(records, journal)

        sink.write = frozen_write  # type: ignore[method-assign]
    hr.run(
        pipeline,
        hr.read_jsonl(source, key="id"),
        sink=sink,
        run_dir=run_dir,
        run_store=run_store,
        resume=existing,
        progress=False,
    )


if __name__ == "__main__":
    main()
