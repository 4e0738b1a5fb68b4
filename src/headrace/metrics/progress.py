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

__all__ = ["Counts", "clock", "run_progress", "times"]


@dataclass(frozen=True, slots=True)
class Counts:
    """What the display shows: items finished in this session, of them dead, the
    total if known, and the items skipped as finished by an earlier session (shown
    as done, but not in the rate or the time left)."""

    done: int
    dead: int
    total: int | None
    skipped: int = 0
    note: str = ""
    """A line on what holds the run back now (an outage), or empty."""


def clock(seconds: float) -> str:
    """``37`` as ``00:37``, ``4000`` as ``1:06:40`` (tqdm's way)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def times(now: Counts, elapsed: float) -> tuple[str, str]:
    """The rate of this session and ``[elapsed<left]``, the time left from that rate
    and the items not yet done (``?`` while unknown)."""
    rate = now.done / elapsed if elapsed > 0 else 0.0
    left = "?"
    if now.total is not None and rate > 0:
        left = clock(max(0, now.total - now.done - now.skipped) / rate)
    return f"{rate:,.1f}", f"[{clock(elapsed)}<{left}]"


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
    )

    columns: list[Any] = [
        TextColumn("[bold]headrace"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[times]}"),
        TextColumn("{task.fields[rate]:>10} items/s"),
        TextColumn("dead {task.fields[dead]}"),
        TextColumn("[bold red]{task.fields[note]}"),
    ]
    started = time.perf_counter()
    with Progress(*columns, console=Console(file=out), transient=False) as bar:
        first = counts()
        task = bar.add_task(
            "run", total=first.total, rate="-", dead=0, times="[00:00<?]", note=first.note
        )
        while True:
            done = await _wait(finished, 0.1)
            now = counts()
            rate, spent = times(now, time.perf_counter() - started)
            bar.update(
                task,
                completed=now.done + now.skipped,
                total=now.total,
                rate=rate,
                dead=now.dead,
                times=spent,
                note=now.note,
            )
            if done:
                return


async def _log_lines(
    counts: Callable[[], Counts], finished: asyncio.Event, out: TextIO, interval_s: float
) -> None:
    started = time.perf_counter()
    printed = False
    shown_note = ""
    while True:
        # a line every interval, and one the moment an outage begins or ends
        waited = 0.0
        done = False
        while waited < interval_s and not done:
            step = min(0.5, interval_s - waited)
            done = await _wait(finished, step)
            waited += step
            if counts().note != shown_note:
                break
        if done and not printed:
            return
        now = counts()
        shown_note = now.note
        rate, spent = times(now, time.perf_counter() - started)
        of = f"/{now.total:,}" if now.total is not None else ""
        skipped = f" ({now.skipped:,} finished before)" if now.skipped else ""
        print(
            f"headrace: {now.done + now.skipped:,}{of} items done{skipped}, {now.dead:,} dead, "
            f"{rate} items/s {spent}" + (f"; {now.note}" if now.note else ""),
            file=out,
            flush=True,
        )
        printed = True
        if done:
            return
