"""A small pipeline over 2,000 synthetic documents, using every part of the engine.

    python examples/quickstart.py

An async "fetch" with latency, a CPU-heavy step in a process pool, a batched
"embedding" step fed one item at a time, a fan-out merged into one record, a
filter, and a deliberately failing item that ends as a dead letter.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import headrace as hr


@hr.step(concurrency=64, timeout="2s")
async def fetch(doc_id: int) -> dict[str, object]:
    """Pretend to call an API: 1-5 ms of latency, one bad id."""
    await asyncio.sleep(random.uniform(0.001, 0.005))
    if doc_id == 1234:
        raise ConnectionError("upstream reset the connection")
    words = " ".join(f"w{(doc_id * 7 + i) % 97}" for i in range(50 + doc_id % 50))
    return {"id": doc_id, "text": words}


def keep_long(doc: dict[str, object]) -> bool:
    return len(str(doc["text"])) > 200


@hr.step(executor="process", concurrency=2)
def checksum(doc: dict[str, object]) -> str:
    """CPU-bound pure Python: runs in worker processes, items sent in chunks."""
    digest = str(doc["text"]).encode()
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


@hr.step(batch=hr.Batch(max_size=32, max_wait="10ms"))
def embed(docs: list[dict[str, object]]) -> list[list[float]]:
    """A batched step: items arrive one by one and are coalesced into calls."""
    return [[len(str(d["text"])) / 1000.0, float(d["id"]) % 7] for d in docs]  # type: ignore[arg-type]


@hr.step
def word_count(doc: dict[str, object]) -> int:
    return len(str(doc["text"]).split())


pipeline = fetch >> hr.filter(keep_long) >> (checksum | embed | word_count) >> hr.merge()


if __name__ == "__main__":  # required where a step uses the process executor
    result = hr.run(pipeline, range(2_000), ordered=True)
    print(result.summary())
    print()
    print("first output:", result.outputs[0])
    for dead in result.dead_letters:
        print(f"dead letter: item {dead.item} in {dead.step}: {dead.error_type}: {dead.message}")
