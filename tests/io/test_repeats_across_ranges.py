"""A key that repeats across ranges of a source (the shards of a run on a cluster):
one scan of the whole source finds the repeats, and runs over the ranges, each
told its repeats, treat them as one run over the whole source does, for each
duplicate-key policy."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.io.keys import scan_repeats
from headrace.io.ranges import SourceRange
from headrace.io.records import KeyedSource
from headrace.store.sqlite import SqliteRunStore

ROWS = [
    {"id": "a", "n": 0},
    {"id": "b", "n": 1},
    {"id": "a#2", "n": 2},  # looks like a suffixed key
    {"id": "c", "n": 3},
    {"id": "a", "n": 4},  # repeats a (suffix: a#3, a#2 is taken)
    {"id": "b", "n": 5},
    "not an object",
    {"id": "a", "n": 7},
    {"id": "d", "n": 8},
    {"id": "c", "n": 9},
]


def _file(path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def _ran(source: Any, tmp: Path, name: str, policy: str) -> tuple[list[Any], list[Any]]:
    """What a run of ``source`` wrote (n, in order), the keys it finished, and its dead
    letters (index, message)."""
    result = run_quietly(
        lambda row: row["n"],
        source,
        sink=hr.write_jsonl(tmp / f"{name}.jsonl"),
        run_dir=tmp / name,
        duplicates=policy,
    )
    written = [json.loads(line) for line in (tmp / f"{name}.jsonl").open()]
    # the keys matter where the policy renames them (each range's store has its own)
    # (a bad record's key is its position in the range: left out)
    stored = SqliteRunStore.in_dir(tmp / name).finished_sessions() if policy == "suffix" else []
    keys = [key for key in stored if not key.startswith("bad:")]
    dead = sorted((d.index, d.message) for d in result.dead_letters)
    return [*written, *sorted(keys)], dead


def test_the_scan_finds_each_repeat_with_the_key_suffix_gives_it(tmp_path: Path) -> None:
    source = hr.read_jsonl(_file(tmp_path / "in.jsonl"), key="id")
    assert scan_repeats(source.records(), "suffix") == {4: "a#3", 5: "b#2", 7: "a#4", 9: "c#2"}
    assert scan_repeats(source.records(), "first") == {4: "a", 5: "b", 7: "a", 9: "c"}


@pytest.mark.parametrize("policy", ["error", "first", "suffix"])
def test_ranges_told_their_repeats_do_what_one_run_over_the_whole_source_does(
    tmp_path: Path, policy: str
) -> None:
    source = hr.read_jsonl(_file(tmp_path / "in.jsonl"), key="id")
    whole_written, whole_dead = _ran(source, tmp_path, "whole", policy)
    repeats = scan_repeats(source.records(), policy)  # type: ignore[arg-type]
    for cut_a, cut_b in itertools.combinations(range(1, len(ROWS)), 2):
        written: list[Any] = []
        dead: list[Any] = []
        for n, (start, stop) in enumerate(((0, cut_a), (cut_a, cut_b), (cut_b, len(ROWS)))):
            mine = {p - start: key for p, key in repeats.items() if start <= p < stop}
            part = SourceRange(source, start, stop, mine)
            part_written, part_dead = _ran(part, tmp_path, f"{policy}{cut_a}-{cut_b}-{n}", policy)
            written += part_written
            dead += [(index + start, message) for index, message in part_dead]
        numbers = [n for n in written if isinstance(n, int)]
        keys = sorted(key for key in written if isinstance(key, str))
        assert (numbers, keys, dead) == (
            [n for n in whole_written if isinstance(n, int)],
            sorted(key for key in whole_written if isinstance(key, str)),
            whole_dead,
        ), (cut_a, cut_b)
    if policy == "error":  # the repeats are dead letters naming their line, as on one machine
        assert [index for index, _ in whole_dead] == [4, 5, 6, 7, 9]
    if policy == "suffix":
        assert sorted(key for key in whole_written if isinstance(key, str)) == [
            "a", "a#2", "a#3", "a#4", "b", "b#2", "c", "c#2", "d"
        ]  # fmt: skip


def test_ranges_not_told_their_repeats_miss_the_ones_across_them(tmp_path: Path) -> None:
    """Why the scan is needed: each range alone sees no repeat of an earlier range."""
    source = hr.read_jsonl(_file(tmp_path / "in.jsonl"), key="id")
    _ran(SourceRange(source, 0, 4), tmp_path, "p0", "first")
    second, _ = _ran(SourceRange(source, 4, 10), tmp_path, "p1", "first")
    whole, _ = _ran(source, tmp_path, "whole", "first")
    assert 4 not in whole and 4 in second  # n=4 repeats key "a" of the first range


def test_a_key_that_looks_suffixed_is_a_repeat_only_under_suffix(tmp_path: Path) -> None:
    rows = [{"id": "a", "n": 0}, {"id": "a", "n": 1}, {"id": "a#2", "n": 2}]
    result = run_quietly(lambda row: row["n"], rows, key="id", run_dir=tmp_path / "r")
    assert [d.index for d in result.dead_letters] == [1]  # "a#2" is its own key
    assert scan_repeats(KeyedSource(rows, "id").records(), "suffix") == {
        1: "a#2",
        2: "a#2#2",
    }
