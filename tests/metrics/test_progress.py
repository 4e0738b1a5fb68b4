"""Progress on a resumed run counts what earlier sessions finished, and labels its times."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.metrics.progress import Counts, clock, times


def test_times_read_like_tqdm_and_leave_out_what_was_skipped() -> None:
    assert clock(37) == "00:37" and clock(129) == "02:09" and clock(4000) == "1:06:40"
    # 100 done in 10 s by this session, 11,944 finished before, 25,000 in all
    rate, spent = times(Counts(done=100, dead=0, total=25_000, skipped=11_944), 10.0)
    assert rate == "10.0"
    assert spent == f"[00:10<{clock((25_000 - 100 - 11_944) / 10)}]"
    assert times(Counts(0, 0, None), 3.0) == ("0.0", "[00:03<?]")


def test_a_second_session_ends_at_the_full_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headrace.metrics.progress as progress

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(40)))
    fixed = False

    @hr.step
    async def slowish(row: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.003)
        if row["id"] % 2 and not fixed:
            raise ValueError("odd")
        return row

    def go(**options: Any) -> hr.RunResult:
        return hr.run(
            slowish,
            hr.read_jsonl(source, key="id"),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            window=2,
            **options,
        )

    assert go(progress=False).items_dead == 20
    original = progress.run_progress

    async def quick(counts: Any, finished: asyncio.Event, **kw: Any) -> None:
        await original(counts, finished, log_interval_s=0.01)

    monkeypatch.setattr("headrace.engine.run_loop.run_progress", quick)
    monkeypatch.setenv("CI", "1")
    fixed = True
    assert go(progress=True, retry_dead=True).items_out == 20
    last = capsys.readouterr().err.strip().splitlines()[-1]
    # the 20 finished before count as done: it ends at 40/40, not 20/40
    assert last.startswith("headrace: 40/40 items done (20 finished before), 0 dead, ")
    assert last.endswith("<00:00]")
