"""Shared by the provider benchmarks: a chat step over aiohttp against ``headrace sim``.

The step is what a user writes for any HTTP API: post, let ``raise_for_status``
raise (headrace recognises the aiohttp error's status and headers), return the JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

import headrace as hr


def chat_items(n: int, *, mixed: bool = False) -> list[dict[str, Any]]:
    """``n`` chat requests; ``mixed`` gives prompts of 1x..8x a base length."""
    items = []
    for i in range(n):
        words = 20 * (1 + (i * 7919) % 8) if mixed else 20
        content = f"item {i}: " + " ".join(["lorem"] * words)
        items.append(
            {
                "model": "sim-chat",
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 64,
            }
        )
    return items


def chat_step(
    session: Callable[[], aiohttp.ClientSession],
    url: str,
    *,
    observe: bool = False,
    headers: bool = True,
    **options: Any,
) -> hr.FunctionStep[dict[str, Any], dict[str, Any]]:
    """A step posting each item to ``url``/chat/completions; ``options`` go to ``hr.step``.

    ``observe`` reports each success's headers with ``hr.observe``; without
    ``headers`` a 429 is raised as a bare ``hr.Throttled()``, as from a provider
    that sends no rate-limit headers.
    """

    @hr.step(name="chat", **options)
    async def chat(item: dict[str, Any]) -> dict[str, Any]:
        async with session().post(f"{url}/chat/completions", json=item) as response:
            if observe:
                hr.observe(response.headers)
            if response.status == 429 and not headers:
                raise hr.Throttled()
            response.raise_for_status()
            reply: dict[str, Any] = await response.json()
            return reply

    return chat


async def run_against(
    url: str, items: list[dict[str, Any]], make_step: Callable[..., Any], **run_options: Any
) -> tuple[hr.RunResult, float]:
    """Run one pipeline over ``items`` with a fresh aiohttp session; return it and its wall time."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        step = make_step(lambda: client, url)
        started = time.perf_counter()
        result = await hr.arun(step, items, progress=False, **run_options)
        return result, time.perf_counter() - started


def run(
    url: str, items: list[dict[str, Any]], make_step: Callable[..., Any], **options: Any
) -> tuple[hr.RunResult, float]:
    """:func:`run_against` from synchronous code."""
    return asyncio.run(run_against(url, items, make_step, **options))


def outcome(
    name: str, result: hr.RunResult, wall: float, stats: dict[str, Any], ideal_s: float
) -> dict[str, Any]:
    """The fields every rate benchmark reports: how items ended, time over the ideal, 429s."""
    items = result.metrics.items_in
    ok = result.metrics.items_out
    return {
        "bench": name,
        "items": items,
        "succeeded": ok,
        "dead": result.metrics.items_dead,
        "wall_s": round(wall, 3),
        "ideal_s": round(ideal_s, 3),
        "of_ideal": round(ideal_s / wall * ok / items, 4),
        "throttled_429s": stats["throttled"],
        "throttled_share": round(stats["throttled"] / stats["requests"], 5),
    }
