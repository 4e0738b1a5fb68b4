"""Shows a run's progress: a rich bar on a terminal, plain log lines elsewhere.

The display polls the run's counters a few times a second; nothing is done per
item, so a display never slows a run down.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Counts", "run_progress"]


@dataclass(frozen=True, slots=True)
class Counts:
    """What the display shows: items finished, of them dead, and the total if known."""

    done: int
    dead: int
    total: int | None


async def run_progress(
    counts: Callable[[], Counts],
    finished: asyncio.Event,
    *,
    stream: TextIO | None = None,
    log_interval_s: float = 10.0,
) -> None:
    """Display progress until ``finished`` is set.

    On a terminal (and ``CI`` unset) a rich progress bar; otherwise one plain line
    every ``log_interval_s`` seconds, and a last line if any was printed.
    """
    out = stream or sys.stderr
    if out.isatty() and not os.environ.get("CI"):
        await _bar(counts, finished, out)
    else:
        await _log_lines(counts, finished, out, log_interval_s)


async def _wait(finished: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await finished.wait()
    except TimeoutError:
        return False
    return True


async def _bar(counts: Callable[[], Counts], finished: asyncio.Event, out: TextIO) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("[bold]headrace"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>10} items/s"),
        TextColumn("dead {task.fields[dead]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    started = time.perf_counter()
    with Progress(*columns, console=Console(file=out), transient=False) as bar:
        first = counts()
        task = bar.add_task("run", total=first.total, rate="-", dead=0)
        while True:
            done = await _wait(finished, 0.1)
            now = counts()
            elapsed = time.perf_counter() - started
            rate = f"{now.done / elapsed:,.0f}" if elapsed > 0 else "-"
            bar.update(task, completed=now.done, total=now.total, rate=rate, dead=now.dead)
            if done:
                return


async def _log_lines(
    counts: Callable[[], Counts], finished: asyncio.Event, out: TextIO, interval_s: float
) -> None:
    started = time.perf_counter()
    printed = False
    while True:
        done = await _wait(finished, interval_s)
        if done and not printed:
            return
        now = counts()
        elapsed = time.perf_counter() - started
        of = f"/{now.total:,}" if now.total is not None else ""
        rate = now.done / elapsed if elapsed > 0 else 0.0
        print(
            f"headrace: {now.done:,}{of} items done, {now.dead:,} dead, "
            f"{rate:,.1f} items/s, {elapsed:,.0f}s elapsed",
            file=out,
            flush=True,
        )
        printed = True
        if done:
            return
