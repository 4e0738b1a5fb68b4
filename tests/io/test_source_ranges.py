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


def _every_split_is_the_whole(source: Any, total: int) -> None:
    """Any three consecutive ranges give the whole source's records, once, in order."""
    whole = _seen(source)
    for cut_a, cut_b in itertools.combinations_with_replacement(range(total + 1), 2):
        parts = [SourceRange(source, a, b) for a, b in ((0, cut_a), (cut_a, cut_b), (cut_b, total))]
        assert [seen for part in parts for seen in _seen(part)] == whole, (cut_a, cut_b)


def test_any_split_of_a_csv_file_gives_each_record_once_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('id,text\nr0,plain\n\nr1,"two\nlines"\nr2\nr3,fine\n"r4,x\nr5,never closed\n')
    source = hr.read_csv(path, key="id")
    assert source.count() is None  # not cheap: a run on one machine does not parse it twice
    total = source.positions()
    assert total == 5  # r0, r1 (two lines), r2 (too few fields), r3, the unclosed quote
    _every_split_is_the_whole(source, total)
    assert [where for _, _, where in _seen(SourceRange(source, 1, 3))] == [
        f"{path}:4",
        f"{path}:6",
    ]


def _parquet(path: Path, groups: int, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"k{n}" for n in range(groups * rows)]
    ids[7] = None  # a bad record: its key is empty
    pq.write_table(
        pa.table({"id": ids, "n": list(range(groups * rows))}), path, row_group_size=rows
    )
    return path


def test_any_split_of_a_parquet_file_gives_each_row_once(tmp_path: Path) -> None:
    source = hr.read_parquet(_parquet(tmp_path / "t.parquet", groups=4, rows=3), key="id")
    assert source.count() == 12
    _every_split_is_the_whole(source, 12)


def test_a_range_of_a_parquet_file_reads_only_the_row_groups_it_overlaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = hr.read_parquet(_parquet(tmp_path / "t.parquet", groups=50, rows=100), key="id")
    read: list[int] = []
    batches = source._batches
    monkeypatch.setattr(
        source,
        "_batches",
        lambda file, group, columns: read.append(group) or batches(file, group, columns),
    )
    keys = [key for key, _, _ in _seen(SourceRange(source, 2050, 2250))]
    assert keys == [f"k{n}" for n in range(2050, 2250)]
    assert read == [20, 21, 22]


def _tree(root: Path, files: int) -> Path:
    for n in range(files):
        folder = root / f"d{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:03d}.txt").write_bytes(b"\xff" if n == 4 else f"text {n}".encode())
    return root


def test_any_split_of_a_directory_gives_each_file_once(tmp_path: Path) -> None:
    source = hr.read_dir(_tree(tmp_path / "tree", 9))
    assert source.count() == 9
    _every_split_is_the_whole(source, 9)


def test_a_range_of_a_directory_reads_only_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = hr.read_dir(_tree(tmp_path / "tree", 30))
    opened: list[str] = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda path: opened.append(path.name) or read_bytes(path)
    )
    keys = [key for key, _, _ in _seen(SourceRange(source, 10, 13))]
    assert keys == ["d1/f001.txt", "bad", "d1/f007.txt"]  # f004 is not UTF-8
    assert len(opened) == 3
