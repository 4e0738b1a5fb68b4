"""A source split into ranges by position (a shard of a run on a cluster): the ranges
together are the source, each record once, with the key and place the whole source
gives it; a JSON Lines file reaches its range by counting newlines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.io import jsonl
from headrace.io.ranges import SourceRange
from headrace.io.records import BadRecord


def _seen(source: Any) -> list[tuple[str, Any, str]]:
    """Each record as (key, value or the bad record's reason, place)."""
    seen = []
    for record in source.records():
        if isinstance(record, BadRecord):
            seen.append(("bad", record.reason, record.where))
        else:
            seen.append((record[0], record[1], source.place))
    return seen


def _messy(path: Path) -> Path:
    lines = [
        '\ufeff{"id": "a", "n": 1}',
        "",
        '{"id": "b", "n": 2}',
        "{not json",
        "   ",
        '{"id": "c", "n": 3}',
        '{"n": 4}',
        '{"id": "d", "n": 5}',
    ]
    path.write_text("\n".join(lines))  # no newline at the end
    return path


def test_any_split_of_a_jsonl_file_gives_each_record_once_with_its_key_and_line(
    tmp_path: Path,
) -> None:
    source = hr.read_jsonl(_messy(tmp_path / "messy.jsonl"), key="id")
    whole = _seen(source)
    total = source.count()
    assert total == 8 and len(whole) == 6
    for cut_a, cut_b in itertools.combinations_with_replacement(range(total + 1), 2):
        parts = [SourceRange(source, a, b) for a, b in ((0, cut_a), (cut_a, cut_b), (cut_b, total))]
        assert [seen for part in parts for seen in _seen(part)] == whole, (cut_a, cut_b)


def test_a_range_deep_in_a_large_file_is_reached_without_reading_what_lies_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "large.jsonl"
    with path.open("w") as handle:  # 3 MB: the range starts past several read chunks
        for n in range(3000):
            handle.write(json.dumps({"id": f"k{n}", "pad": "x" * 1000}) + "\n")
    source = hr.read_jsonl(path, key="id")
    decoded: list[bytes] = []
    monkeypatch.setattr(jsonl, "decode_json", lambda line: decoded.append(line) or json.loads(line))
    part = SourceRange(source, 2500, 2503)
    assert [key for key, _, _ in _seen(part)] == ["k2500", "k2501", "k2502"]
    assert len(decoded) == 3  # the 2,500 lines before it were counted, not parsed
    assert part.place == f"{path}:2503"
    assert _seen(SourceRange(source, 2999, 4000))[0][0] == "k2999"
    assert _seen(SourceRange(source, 3000, 3000)) == []


def test_a_range_of_a_csv_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,n\n" + "".join(f"r{n},{n}\n" for n in range(10)))
    source = hr.read_csv(path, key="id")
    assert [key for key, _, _ in _seen(SourceRange(source, 4, 7))] == ["r4", "r5", "r6"]
