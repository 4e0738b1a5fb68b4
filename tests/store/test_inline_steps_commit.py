"""A step that never suspends (a sync function called inline on the event loop) still
lets the run commit as it goes: the writer and the lease's heartbeat get the loop."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from services import run_quietly

import headrace as hr


def test_a_blocking_inline_step_does_not_hold_back_the_commits(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seen: list[int] = []

    @hr.step
    def blocking(n: int) -> int:
        time.sleep(0.005)  # blocks the event loop: this step is called inline
        if n == 190:  # 0.95 s into the run: what has the store committed so far?
            with sqlite3.connect(run_dir / "run.sqlite") as db:
                seen.append(db.execute("SELECT count(*) FROM items").fetchone()[0])
        return n

    sink = hr.write_jsonl(tmp_path / "out.jsonl")
    result = run_quietly(blocking, range(200), sink=sink, run_dir=run_dir, window=4)
    assert result.items_out == 200
    # commits come every 0.2 s once the writer gets the loop (after each of the four
    # lanes' turn); without the lanes yielding, the first came at the end of the run
    assert seen and seen[0] > 0, seen
