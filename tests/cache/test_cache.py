"""The cache against real SQLite files and a real Redis: tiers, TTL, LRU, fingerprints,
normalisation, single-flight, a Redis outage mid-run, several processes, bad values."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel
from services import PrivateRedis, run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cache.keys import canonical
from headrace.cli import app


class Doubled(BaseModel):
    value: int
    note: str


def counting_step(cache: hr.Cache, calls: list[int], *, delay: float = 0.0) -> hr.FunctionStep:  # type: ignore[type-arg]
    @hr.step(cache=cache, name="double")
    async def double(x: int) -> Doubled:
        calls.append(x)
        if delay:
            await asyncio.sleep(delay)
        return Doubled(value=2 * x, note=f"from {x}")

    return double


def fresh(tmp_path: Path, *tiers: str, **options: object) -> hr.Cache:
    """A cache whose keys no other test shares (Redis outlives the tests)."""
    options.setdefault("version", uuid.uuid4().hex)
    return hr.Cache(tiers or ("memory", "sqlite"), path=tmp_path / "cache.sqlite", **options)  # type: ignore[arg-type]


def test_sqlite_hits_in_a_fresh_cache_come_back_as_the_model_and_fill_memory(
    tmp_path: Path,
) -> None:
    version = uuid.uuid4().hex
    calls: list[int] = []
    first = run_quietly(counting_step(fresh(tmp_path, version=version), calls), range(10))
    assert len(calls) == 10
    assert first.metrics.step("double").cache.misses == 10  # type: ignore[union-attr]
    again = fresh(tmp_path, version=version)  # a new process would start like this: memory empty
    second = run_quietly(counting_step(again, calls), range(10), ordered=True)
    assert len(calls) == 10  # nothing computed again
    assert second.outputs == [Doubled(value=2 * i, note=f"from {i}") for i in range(10)]
    stats = second.metrics.step("double").cache
    assert stats is not None and stats.hits == {"sqlite": 10} and stats.backfills == 10
    third = run_quietly(counting_step(again, calls), range(10))
    assert third.metrics.step("double").cache.hits == {"memory": 10}  # type: ignore[union-attr]
    assert "cache: hits memory 10" in third.summary()


def test_redis_hits_back_fill_memory_and_sqlite(tmp_path: Path, redis_url: str) -> None:
    version = uuid.uuid4().hex
    calls: list[int] = []
    warm = hr.Cache([redis_url], version=version)
    run_quietly(counting_step(warm, calls), range(6))
    tiers = ("memory", "sqlite", redis_url)
    cache = hr.Cache(tiers, path=tmp_path / "other.sqlite", version=version)
    result = run_quietly(counting_step(cache, calls), range(6))
    assert len(calls) == 6
    stats = result.metrics.step("double").cache
    assert stats is not None and stats.hits == {"redis": 6} and stats.backfills == 12
    again = hr.Cache(("sqlite",), path=tmp_path / "other.sqlite", version=version)
    assert run_quietly(counting_step(again, calls), range(6)).metrics.step("double").cache.hits == {
        "sqlite": 6
    }  # type: ignore[union-attr]


def test_entries_expire_after_their_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    cache = fresh(tmp_path, ttl="1h", _clock=lambda: now[0])
    calls: list[int] = []
    run_quietly(counting_step(cache, calls), range(3))
    now[0] += 3599
    run_quietly(counting_step(cache, calls), range(3))
    assert len(calls) == 3
    now[0] += 2
    run_quietly(counting_step(cache, calls), range(3))
    assert len(calls) == 6


def test_the_memory_tier_keeps_the_most_recently_used(tmp_path: Path) -> None:
    cache = fresh(tmp_path, "memory", max_items=2)
    calls: list[int] = []
    run_quietly(counting_step(cache, calls), [1, 2, 3], window=1)
    assert cache.memory is not None and len(cache.memory.entries) == 2
    run_quietly(counting_step(cache, calls), [3, 2, 1], window=1)
    assert calls == [1, 2, 3, 1]  # 1 had been evicted; 2 and 3 were kept


def test_a_changed_step_misses_and_a_kept_version_hits(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"

    @hr.step(cache=hr.Cache(["sqlite"], path=path), name="f")
    def before(x: int) -> int:
        return x + 1

    @hr.step(cache=hr.Cache(["sqlite"], path=path), name="f")
    def after(x: int) -> int:
        return x + 2

    run_quietly(before, [1])
    changed = run_quietly(after, [1])
    assert changed.outputs == [3] and changed.metrics.step("f").cache.misses == 1  # type: ignore[union-attr]

    @hr.step(cache=hr.Cache(["sqlite"], path=path, version="v1"), name="g")
    def cosmetic(x: int) -> int:
        return x + 1

    @hr.step(cache=hr.Cache(["sqlite"], path=path, version="v1"), name="g")
    def cosmetic_again(value: int) -> int:  # renamed argument: same results, promised
        return value + 1

    run_quietly(cosmetic, [5])
    kept = run_quietly(cosmetic_again, [5])
    assert kept.metrics.step("g").cache.hits == {"sqlite": 1}  # type: ignore[union-attr]


def test_normalised_keys_share_an_entry(tmp_path: Path) -> None:
    seen: list[str] = []

    @hr.step(cache=fresh(tmp_path, key=hr.cache.normalise_text))
    def shout(text: str) -> str:
        seen.append(text)
        return text.upper()

    result = run_quietly(shout, ["Hello,  World!", "hello world", "HELLO world."], window=1)
    assert seen == ["Hello,  World!"]
    assert result.outputs == ["HELLO,  WORLD!"] * 3
    assert hr.cache.normalise_text({"a": " Mixed   CASE! "}) == {"a": "mixed case"}


def test_identical_calls_in_flight_are_joined(tmp_path: Path) -> None:
    calls: list[int] = []
    items = [i % 50 for i in range(100)]  # every input twice, 50% duplicates
    result = run_quietly(counting_step(fresh(tmp_path), calls, delay=0.02), items)
    assert sorted(calls) == list(range(50))
    stats = result.metrics.step("double").cache
    assert stats is not None and stats.joins + sum(stats.hits.values()) == 50
    assert result.items_out == 100


def test_a_failed_call_fails_its_joined_items_too_and_is_not_cached(tmp_path: Path) -> None:
    calls: list[int] = []

    @hr.step(cache=fresh(tmp_path))
    async def flaky(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.02)
        raise ValueError(f"bad {x}")

    result = run_quietly(flaky, [7, 7, 7])
    assert calls == [7] and result.items_dead == 3
    assert all(d.error_type == "ValueError" for d in result.dead_letters)
    run_quietly(flaky, [7])
    assert calls == [7, 7]


def test_an_output_that_cannot_be_stored_names_the_step(tmp_path: Path) -> None:
    @hr.step(cache=fresh(tmp_path), name="opaque")
    def opaque(x: int) -> object:
        return object()

    result = run_quietly(opaque, [1])
    dead = result.dead_letters[0]
    assert dead.step == "opaque" and dead.error_type == "EncodeError"
    assert "step 'opaque' has a cache, but its output cannot be stored" in dead.message


def test_canonical_keys_are_stable_and_distinguish_kinds() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    assert canonical({"a": 1, "b": [1, 2]}) == canonical({"b": [1, 2], "a": 1})
    assert len({canonical(v) for v in (1, 1.0, "1", True, [1], (1,))}) == 6
    assert canonical({1, 2, 3}) == canonical({3, 2, 1})
    assert canonical(Doubled(value=1, note="x")) == canonical(Doubled(note="x", value=1))
    assert canonical(Point(1, 2)) != canonical({"x": 1, "y": 2})
    with pytest.raises(TypeError, match="no canonical form"):
        canonical(object())


def test_a_redis_outage_mid_run_is_a_warning_and_a_miss_and_recovers(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @hr.step(cache=hr.Cache([private_redis.url]), concurrency=4, name="double")
    async def double(x: int) -> int:
        calls.append(x)
        if len(calls) == 40:
            private_redis.stop()  # Redis goes away mid-run ...
        if len(calls) == 80:
            private_redis.start()  # ... and comes back
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.005 if len(calls) < 80 else 0.02)
        return 2 * x

    caplog.set_level(logging.WARNING, logger="headrace.cache")
    result = run_quietly(double, range(150), ordered=True)
    assert result.outputs == [2 * i for i in range(150)] and not result.dead_letters
    stats = result.metrics.step("double").cache
    assert stats is not None and stats.tiers_down >= 1
    assert "is not answering" in caplog.text and "answers again" in caplog.text
    again = run_quietly(double, range(140, 150))  # stored after it came back
    assert again.metrics.step("double").cache.hits.get("redis", 0) > 0  # type: ignore[union-attr]


WORKER = """
import sys, headrace as hr
@hr.step(cache=hr.Cache(["sqlite"], path=sys.argv[1], version="shared"), name="square")
def square(x: int) -> int:
    return x * x
start = int(sys.argv[2])
result = hr.run(square, range(start, start + 300), progress=False)
assert result.items_out == 300, result.summary()
"""


@pytest.mark.slow
def test_several_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(start)])
        for start in (0, 100, 200, 300)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    calls: list[int] = []

    @hr.step(cache=hr.Cache(["sqlite"], path=path, version="shared"), name="square")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    result = run_quietly(square, range(600))
    assert calls == [] and result.metrics.step("square").cache.hits == {"sqlite": 600}  # type: ignore[union-attr]


def test_the_cache_command_shows_clears_and_prunes(tmp_path: Path) -> None:
    from headrace.cache.manage import prune

    path = tmp_path / "cli.sqlite"

    @hr.step(cache=hr.Cache(["sqlite"], path=path), name="s")
    def older(x: int) -> int:
        return x + 1

    @hr.step(cache=hr.Cache(["sqlite"], path=path), name="s")
    def newer(x: int) -> int:
        return x * 3

    @hr.step(cache=hr.Cache(["sqlite"], path=path, ttl=10, _clock=lambda: 1000.0), name="t")
    def brief(x: int) -> int:
        return x

    run_quietly(older, range(4))
    time.sleep(0.01)  # the newer code is used later: its fingerprint is the step's newest
    run_quietly(newer, range(2))
    run_quietly(brief, range(3))
    runner = CliRunner()
    shown = runner.invoke(app, ["cache", "stats", "--path", str(path)])
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line.split()[1:] for line in shown.output.splitlines()[2:]}
    assert lines["s"][0] == "6" and lines["s"][3] == "4"  # 6 entries, 4 of them stale
    assert lines["t"][0] == "3" and lines["t"][2] == "3"  # 3 entries, all expired
    assert prune(path, now=1005.0) == (0, 4)  # before the ttl ran out: only the stale go
    pruned = runner.invoke(app, ["cache", "prune", "--path", str(path)])
    assert "removed 3 expired and 0 stale entries" in pruned.output
    cleared = runner.invoke(app, ["cache", "clear", "--path", str(path)])
    assert "removed 2 entries" in cleared.output
    missing = runner.invoke(app, ["cache", "stats", "--path", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 1


def test_an_llm_answer_cached_from_one_endpoint_is_not_served_for_another(
    tmp_path: Path,
) -> None:
    """Rehearsed against the sim, then pointed at a 'real' provider: it must call it."""
    from headrace.sim import serve

    path = tmp_path / "cache.sqlite"
    records = [{"text": f"t{n}"} for n in range(5)]

    def say(url: str) -> hr.llm.Complete:
        llm = hr.llm.Client(base_url=url)
        return hr.llm.complete(
            client=llm, model="m", prompt="{text}", cache=hr.Cache(["sqlite"], path=path)
        )

    with serve() as rehearsal, serve() as provider:
        run_quietly(say(rehearsal.url), records)
        run_quietly(say(rehearsal.url), records)
        assert rehearsal.stats()["requests"] == 5  # the second run came from the cache
        run_quietly(say(provider.url), records)
        assert provider.stats()["requests"] == 5  # another endpoint: asked, not the cache
