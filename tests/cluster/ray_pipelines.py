"""Pipelines the Ray tests ship to workers (which import this module as the tests do:
a cluster started here gives its workers the driver's import path)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import headrace as hr


@hr.step
def double(item: dict[str, Any]) -> dict[str, Any]:
    """Fails on every 97th item, so that a run has dead letters."""
    if item["n"] % 97 == 5:
        raise ValueError(f"item {item['n']} is bad")
    return {"id": item["id"], "double": item["n"] * 2}


@hr.step(concurrency=4)
def slow_double(item: dict[str, Any]) -> dict[str, Any]:
    """Takes 20 ms, so that a kill lands mid-shard."""
    time.sleep(0.02)
    return {"id": item["id"], "double": item["n"] * 2}


def busy(item: dict[str, Any]) -> dict[str, Any]:
    """About 5 ms of pure-Python work (the CPU-bound benchmark's step)."""
    total = 0
    for n in range(60_000):
        total += n * n % 7
    return {"id": item["id"], "work": total}


@hr.step
def echo(item: dict[str, Any]) -> dict[str, Any]:
    """The item itself (a source's records, as the sink writes them)."""
    return item


def counted(url: str, key: str, shared: bool) -> hr.Step[Any, Any]:
    """A 30 ms call under ``hr.AdaptiveConcurrency(initial=8, max=8)`` (shared in Redis or
    not) that counts the calls in flight across every process in Redis, keeping the
    peak under ``<key>:peak``."""
    import redis.asyncio as aioredis

    policy = hr.AdaptiveConcurrency(initial=8, max=8, shared=url if shared else None, key=key)
    clients: dict[int, Any] = {}

    @hr.step(concurrency=policy)
    async def call(item: dict[str, Any]) -> dict[str, Any]:
        client = clients.setdefault(id(asyncio.get_running_loop()), aioredis.from_url(url))
        now = await client.incr(f"{key}:in_flight")
        await client.eval(_PEAK, 1, f"{key}:peak", now)
        await asyncio.sleep(0.03)
        await client.decr(f"{key}:in_flight")
        return {"id": item["id"]}

    return call


_PEAK = (
    "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) end"
)


def _batch_ask() -> hr.Step[Any, Any]:
    """A completion on the batch tier against the simulator at ``$RAY_BATCH_SIM`` (read
    where the pipeline is imported: the driver and each worker), kept beside the item."""
    client = hr.llm.Client(
        base_url=os.environ.get("RAY_BATCH_SIM", "http://127.0.0.1:9/v1"),
        prices={"sim-chat": hr.llm.Price(input=1.0, output=2.0)},
    )
    tier = hr.llm.BatchTier(max_requests=50, gather=0.1, poll=0.1)
    ask = hr.llm.complete(client=client, model="sim-chat", prompt="{id}", tier=tier, name="ask")
    return hr.with_input(ask, field="answer")


batch_ask = _batch_ask()
