"""Bad input is never silently changed: each case is a dead letter (or a refusal)
naming file:line and what is wrong, and the good records around it are kept as read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import SourceError


def run(source: Any) -> hr.RunResult:
    return run_quietly(lambda r: r, source, ordered=True)


def test_a_30_digit_id_stays_exact_and_does_not_collide(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    a, b = 123456789012345678901234567890, 123456789012345678901234567891
    path.write_text(f'{{"id": {a}, "v": 1}}\n{{"id": {b}, "v": 2}}\n{{"id": 7, "v": 3}}\n')
    result = run_quietly(lambda r: r, hr.read_jsonl(path, key="id"), run_dir=tmp_path / "run")
    assert result.items_out == 3 and result.items_dead == 0  # no duplicate-key collision
    outputs = [json.loads(x) for x in (tmp_path / "run" / "outputs.jsonl").read_text().splitlines()]
    assert sorted(o["id"] for o in outputs) == [7, a, b]  # integers, exact


def test_invalid_utf8_in_jsonl_names_its_byte(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2, "t": "ab\xffc"}\n{"id": 3}\n')
    result = run(hr.read_jsonl(path, key="id"))
    [dead] = result.dead_letters
    assert dead.message == f"{path}:2: not valid UTF-8 (at byte 19)"
    assert result.items_out == 2


def test_a_byte_order_mark_is_not_data(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1}\n{"id": 2}\n')
    assert run(hr.read_jsonl(path, key="id")).outputs == [{"id": 1}, {"id": 2}]
    csv_path = tmp_path / "in.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,v\n1,a\n")
    assert run(hr.read_csv(csv_path, key="id")).outputs == [{"id": "1", "v": "a"}]


def test_invalid_utf8_in_csv_is_a_dead_letter_not_a_replacement_character(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\n1,fine\n2,caf\xe9\n3,ok\n")
    result = run(hr.read_csv(path, key="id"))
    [dead] = result.dead_letters
    assert dead.message == f"{path}:3: field 'text' is not valid UTF-8 (at character 4)"
    assert [o["id"] for o in result.outputs] == ["1", "3"]
    assert not any("\ufffd" in str(o) for o in result.outputs)


def test_an_unterminated_quote_names_the_lines_it_would_swallow(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,ok\n2,"never closed\n3,swallowed\n4,swallowed too\n')
    result = run(hr.read_csv(path, key="id"))
    [dead] = result.dead_letters
    assert dead.message == (
        f"{path}:3: a quote opened in this record is never closed: lines 3 to 5 (the end of "
        "the file) would be one field"
    )
    assert result.items_out == 1


def test_a_repeated_csv_header_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,v,v\n1,a,b\n")
    with pytest.raises(
        SourceError, match=rf"^{path}:1: the header names column 'v' more than once$"
    ):
        run(hr.read_csv(path, key="id"))


def test_a_tabular_sink_refuses_an_integer_its_column_cannot_hold(tmp_path: Path) -> None:
    """Not written as a float (which would change it): a dead letter naming the field."""
    big = 123456789012345678901234567890
    result = run_quietly(
        lambda r: r,
        [{"id": big}],
        sink=hr.write_csv(tmp_path / "out.csv"),
        run_dir=tmp_path / "run",
    )
    [dead] = result.dead_letters
    assert (dead.step, dead.message) == ("<sink>", f"field 'id': {big} does not fit in int64")
