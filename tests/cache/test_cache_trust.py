"""Cache entries are data, never code: a tampered entry in SQLite or a real Redis is
a counted miss with one warning, and no class named by an entry is ever called."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.cache.envelope import Declared, EncodeError, decode, encode

POPEN = '{"t":"dataclass","c":"subprocess:Popen","v":{"args":{"t":"list","v":[%s]}}}'
FILEIO = (
    '{"t":"dataclass","c":"io:FileIO",'
    '"v":{"file":{"t":"json","v":"%s"},"mode":{"t":"json","v":"w"}}}'
)
MODEL = '{"t":"model","c":"%s","v":{"value":1,"note":"forged"}}'


class Doubled(BaseModel):
    value: int
    note: str


@dataclasses.dataclass
class Pair:
    left: int
    right: Doubled


def payloads(tmp_path: Path) -> list[bytes]:
    touch = ",".join(f'{{"t":"json","v":"{w}"}}' for w in ("touch", str(tmp_path / "pwned")))
    return [
        (POPEN % touch).encode(),
        (FILEIO % (tmp_path / "victim.txt")).encode(),
        (MODEL % "headrace.cache:Cache").encode(),  # a class the step did not declare
        b'{"t":"json","v":{"nested":"dict smuggled as a scalar"}}',
        b'{"t":"ndarray","d":"O","s":[1],"v":"AAAAAAAAAAA="}',
        b"[" * 5000 + b"]" * 5000,
        b"not json at all",
    ]


def step_with(cache: hr.Cache, calls: list[int]) -> hr.FunctionStep:  # type: ignore[type-arg]
    @hr.step(cache=cache, name="double")
    def double(x: int) -> Doubled:
        calls.append(x)
        return Doubled(value=2 * x, note=f"from {x}")

    return double


def attack(
    tmp_path: Path, cache: hr.Cache, overwrite: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "victim.txt").write_text("precious")
    calls: list[int] = []
    run_quietly(step_with(cache, calls), range(3))
    assert sorted(calls) == [0, 1, 2]
    for payload in payloads(tmp_path):
        overwrite(payload)
        calls.clear()
        with caplog.at_level(logging.WARNING, logger="headrace.cache"):
            result = run_quietly(step_with(cache, calls), range(3), ordered=True)
        assert result.outputs == [Doubled(value=2 * x, note=f"from {x}") for x in range(3)]
        stats = result.metrics.step("double").cache
        assert stats is not None and stats.unreadable == 3 and sorted(calls) == [0, 1, 2]
        warnings = [r for r in caplog.records if "is not read back" in r.getMessage()]
        assert len(warnings) == 1, payload[:60]  # one warning a run, not one per entry
        caplog.clear()
        assert not (tmp_path / "pwned").exists()
        assert (tmp_path / "victim.txt").read_text() == "precious"


def test_tampered_sqlite_entries_are_misses_and_run_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite"
    cache = hr.Cache(["sqlite"], path=path, version=uuid.uuid4().hex)

    def overwrite(payload: bytes) -> None:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE entries SET value = ?", (payload,))

    attack(tmp_path, cache, overwrite, caplog)


def test_tampered_redis_entries_are_misses_and_run_nothing(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    cache = hr.Cache([redis_url], version=uuid.uuid4().hex)
    before = set(client.scan_iter("headrace:cache:*"))  # keys other tests left
    written: list[bytes] = []

    def overwrite(payload: bytes) -> None:
        if not written:  # the keys this test's first run wrote
            written.extend(set(client.scan_iter("headrace:cache:*")) - before)
            assert len(written) == 3
        for key in written:
            client.set(key, payload)

    attack(tmp_path, cache, overwrite, caplog)


def test_declared_types_come_back_through_validation() -> None:
    declared = Declared(list[Pair])
    value = [Pair(1, Doubled(value=2, note="n"))]
    assert decode(encode(value, declared), declared) == value
    forged = b'{"t":"model","c":"%s:Doubled","v":{"value":"not a number","note":"x"}}' % (
        __name__.encode()
    )
    with pytest.raises(ValueError, match="validation error"):
        decode(forged, declared)


def test_an_undeclared_class_is_refused_when_stored_with_the_way_out() -> None:
    with pytest.raises(EncodeError, match=r"annotate the step's return type, or Cache\(types="):
        encode(Doubled(value=1, note="x"), Declared(None))
    assert decode(encode(Doubled(value=1, note="x"), Declared(None, [Doubled])), Declared(Doubled))


def test_a_step_without_annotation_declares_through_cache_types(tmp_path: Path) -> None:
    cache = hr.Cache(["sqlite"], path=tmp_path / "c.sqlite", types=[Doubled], version="1")
    calls: list[int] = []

    @hr.step(cache=cache, name="plain")
    def plain(x):  # type: ignore[no-untyped-def]
        calls.append(x)
        return Doubled(value=x, note="")

    run_quietly(plain, range(2))
    again = run_quietly(plain, range(2), ordered=True)
    assert again.outputs == [Doubled(value=0, note=""), Doubled(value=1, note="")]
    assert sorted(calls) == [0, 1]
    assert orjson.loads(encode(1, Declared()))["t"] == "json"
