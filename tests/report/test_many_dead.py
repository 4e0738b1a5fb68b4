"""Many dead letters: the report and the live page read their groups (a count and a few
examples each), never every dead letter; the result keeps the first ones; dead.jsonl
is written a few at a time and holds every one. 200,000 of them used to hold 934 MB
and cost 1.2 s and 358 MB on every refresh of the live page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.report.page import EXAMPLES, RunRecord, render_page
from headrace.store import SqliteRunStore, StoreLocation

ITEMS = 3000


@hr.step
def picky(n: int) -> int:
    if n % 3 == 0:
        raise ValueError(f"no multiples of three ({n})")
    if n % 3 == 1:
        raise KeyError(n)
    return n


def test_the_page_reads_groups_and_the_result_keeps_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("headrace.engine.run_loop.RESULT_DEAD_LETTERS", 100)
    result = run_quietly(
        picky,
        range(ITEMS),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=tmp_path / "run",
    )
    dead = ITEMS - ITEMS // 3
    assert result.items_dead == dead
    assert [d.index for d in result.dead_letters] == sorted(n for n in range(ITEMS) if n % 3 != 2)[
        :100
    ]
    lines = (tmp_path / "run" / "dead.jsonl").read_text().splitlines()
    assert len(lines) == dead and json.loads(lines[-1])["index"] == ITEMS - 2

    def every(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the report read every dead letter")

    monkeypatch.setattr(SqliteRunStore, "dead_letters", every)
    monkeypatch.setattr(SqliteRunStore, "iter_dead_letters", every)
    record = RunRecord.load(StoreLocation(tmp_path / "run"))
    assert [(g.step, g.error_type, g.count) for g in record.dead] == [
        ("picky", "KeyError", ITEMS // 3),
        ("picky", "ValueError", ITEMS // 3),
    ]
    assert all(len(g.examples) == EXAMPLES for g in record.dead)
    assert [e.index for e in record.dead[1].examples] == [0, 3, 6]
    page = render_page(record)
    assert f"{ITEMS // 3:,}</span>" in page


def test_a_postgresql_store_groups_and_streams_them_too(
    tmp_path: Path, postgres_url: str, run_name: str
) -> None:
    from headrace.store.postgres import PostgresRunStore

    result = run_quietly(
        picky,
        range(ITEMS),
        sink=hr.write_jsonl(tmp_path / "out.jsonl"),
        run_dir=tmp_path / run_name,
        run_store=postgres_url,
    )
    assert result.items_dead == ITEMS - ITEMS // 3
    lines = (tmp_path / run_name / "dead.jsonl").read_text().splitlines()
    assert len(lines) == result.items_dead
    store = PostgresRunStore(postgres_url, run_name)
    try:
        groups = store.dead_letter_groups(2)
        streamed = [d.index for d in store.iter_dead_letters()]
    finally:
        store.close()
    assert [(g.error_type, g.count, len(g.examples)) for g in groups] == [
        ("KeyError", ITEMS // 3, 2),
        ("ValueError", ITEMS // 3, 2),
    ]
    assert streamed == sorted(n for n in range(ITEMS) if n % 3 != 2)
