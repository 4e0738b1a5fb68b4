"""Pipelines the Ray tests ship to workers (which import this module as the tests do:
a cluster started here gives its workers the driver's import path)."""

from __future__ import annotations

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
