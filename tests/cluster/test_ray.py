"""A run on Ray (a local cluster, 2 CPUs) keeps the local runner's promises: the same
outputs and dead letters, exactly once at the sink across killed workers and a
killed driver, and a clear error for what cannot be split or shipped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import ray_pipelines
from conftest import jsonl_ids, write_items
from services import run_quietly

import headrace as hr
from headrace.cluster.shards import ShardPlan, shard_location
from headrace.errors import PipelineError
from headrace.store import StoreLocation

pytestmark = pytest.mark.slow

ITEMS = 400


def _sink(kind: str, tmp_path: Path, name: str) -> Any:
    if kind == "jsonl":
        return hr.write_jsonl(tmp_path / f"{name}.jsonl")
    if kind == "csv":
        return hr.write_csv(tmp_path / f"{name}.csv")
    if kind == "parquet":
        return hr.write_parquet(tmp_path / f"{name}.parquet", items_per_file=25)
    return hr.write_sql(f"sqlite:///{tmp_path / 'out.db'}", table=name, key="id")


def _outputs(kind: str, tmp_path: Path, name: str) -> list[tuple[str, int]]:
    if kind == "jsonl":
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    elif kind == "csv":
        import csv

        with (tmp_path / f"{name}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
    elif kind == "parquet":
        rows = pq.read_table(tmp_path / f"{name}.parquet").to_pylist()
    else:
        with sqlite3.connect(tmp_path / "out.db") as db:
            rows = [{"id": i, "double": d} for i, d in db.execute(f"SELECT id, double FROM {name}")]
    return [(str(row["id"]), int(row["double"])) for row in rows]


def _dead(run_dir: Path) -> set[tuple[int, str, str]]:
    lines = (run_dir / "dead.jsonl").read_text().splitlines()
    return {(d["index"], d["key"], d["step"]) for d in map(json.loads, lines)}


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "sql"])
def test_same_outputs_and_dead_letters_as_the_local_backend(
    local_ray: None, tmp_path: Path, kind: str
) -> None:
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", ITEMS), key="id")
    local = run_quietly(
        ray_pipelines.double,
        source,
        sink=_sink(kind, tmp_path, "local"),
        run_dir=tmp_path / "local",
    )
    on_ray = run_quietly(
        ray_pipelines.double,
        source,
        sink=_sink(kind, tmp_path, "ray"),
        run_dir=tmp_path / "ray",
        backend=hr.Ray(workers=2, shard_size=70),
    )
    assert (on_ray.items_in, on_ray.items_out, on_ray.items_dead) == (
        local.items_in,
        local.items_out,
        local.items_dead,
    )
    assert on_ray.items_dead == 5
    ours, theirs = _outputs(kind, tmp_path, "ray"), _outputs(kind, tmp_path, "local")
    assert sorted(ours) == sorted(theirs) and len(ours) == ITEMS - 5
    if kind in ("jsonl", "csv"):  # the shards joined in source order, as the local run wrote
        assert ours == theirs
    assert _dead(tmp_path / "ray") == _dead(tmp_path / "local")
    assert {d.index for d in on_ray.dead_letters} == {d.index for d in local.dead_letters}
    assert on_ray.metrics.step("double").calls == local.metrics.step("double").calls


def test_a_finished_run_resumes_to_nothing(local_ray: None, tmp_path: Path) -> None:
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id")
    options: dict[str, Any] = {
        "sink": hr.write_jsonl(tmp_path / "out.jsonl"),
        "run_dir": tmp_path / "run",
        "progress": False,
        "backend": hr.Ray(workers=2, shard_size=50),
    }
    hr.run(ray_pipelines.double, source, **options)
    before = (tmp_path / "out.jsonl").read_bytes()
    again = hr.run(ray_pipelines.double, source, **options)
    assert again.items_in == 0 and again.metrics.items_skipped == 200
    assert (tmp_path / "out.jsonl").read_bytes() == before


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_joined_file_leaves_no_shard_files_and_is_checked_after(
    local_ray: None, tmp_path: Path, kind: str
) -> None:
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 120), key="id")
    out = tmp_path / f"out.{kind}"
    sink = hr.write_jsonl(out) if kind == "jsonl" else hr.write_csv(out)
    options: dict[str, Any] = {
        "sink": sink,
        "run_dir": tmp_path / "run",
        "progress": False,
        "backend": hr.Ray(workers=2, shard_size=40),
    }
    hr.run(ray_pipelines.echo, source, **options)
    assert not (tmp_path / f"out.{kind}.shards").exists()  # joined with no dead letter
    before = out.read_bytes()
    again = hr.run(ray_pipelines.echo, source, **options)
    assert again.items_in == 0 and out.read_bytes() == before  # not joined from nothing
    out.write_bytes(before[:-10])
    with pytest.raises(hr.errors.SinkDamaged, match="not the file this finished run joined"):
        hr.run(ray_pipelines.echo, source, **options)


def test_a_run_with_dead_letters_keeps_its_shard_files_for_retry_dead(
    local_ray: None, tmp_path: Path
) -> None:
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 200), key="id")
    options: dict[str, Any] = {
        "sink": hr.write_jsonl(tmp_path / "out.jsonl"),
        "run_dir": tmp_path / "run",
        "progress": False,
        "backend": hr.Ray(workers=2, shard_size=50),
    }
    first = hr.run(ray_pipelines.double, source, **options)
    assert first.items_dead == 3
    assert (tmp_path / "out.jsonl.shards").is_dir()  # retry-dead writes the shards again
    fixed = hr.run(ray_pipelines.echo, source, retry_dead=True, force=True, **options)
    assert fixed.items_dead == 0
    assert not (tmp_path / "out.jsonl.shards").exists()
    assert sorted(jsonl_ids(tmp_path / "out.jsonl")) == [f"item-{n:05d}" for n in range(200)]


def _live_shard_holders(parent: StoreLocation, shards: int) -> list[int]:
    """The pids of the workers holding a shard's lease right now."""
    pids = []
    for index in range(shards):
        location = shard_location(parent, index)
        if not location.exists():
            continue
        store = location.open()
        try:
            lease = store.lease()
        finally:
            store.close()
        if lease is not None and lease.alive() and lease.pid != os.getpid():
            pids.append(lease.pid)
    return pids


def _killer(parent: StoreLocation, shards: int, out: Path, kills: list[int]) -> None:
    """Once some output exists, SIGKILL every worker holding a shard (two at once), and
    once more a little later."""
    deadline = time.monotonic() + 120
    for after_lines in (60, 300):
        while time.monotonic() < deadline:
            lines = sum(p.read_bytes().count(b"\n") for p in out.glob("*.jsonl"))
            pids = _live_shard_holders(parent, shards)
            if lines >= after_lines and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                break
            time.sleep(0.05)


def test_killed_workers_lose_and_double_nothing(
    local_ray: None, tmp_path: Path, postgres_url: str, shard_runs: str
) -> None:
    count, shard_size = 600, 50
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", count), key="id")
    run_dir = tmp_path / shard_runs
    out = tmp_path / "out.jsonl"
    kills: list[int] = []
    parent = StoreLocation(run_dir, postgres_url)
    shards_dir = Path(f"{out}.shards")
    killer = threading.Thread(
        target=_killer, args=(parent, count // shard_size, shards_dir, kills), daemon=True
    )
    killer.start()
    result = run_quietly(
        ray_pipelines.slow_double,
        source,
        sink=hr.write_jsonl(out),
        run_dir=run_dir,
        run_store=postgres_url,
        backend=hr.Ray(workers=2, shard_size=shard_size),
    )
    killer.join(timeout=10)
    assert len(kills) >= 2, "the test killed no worker mid-run"
    ids = jsonl_ids(out)
    assert len(ids) == count and Counter(ids).most_common(1)[0][1] == 1
    assert result.items_dead == 0


def test_a_pipeline_that_cannot_be_shipped_is_refused_by_name(tmp_path: Path) -> None:
    lock = threading.Lock()

    @hr.step(name="guarded")
    def guarded(item: dict[str, Any]) -> dict[str, Any]:
        with lock:
            return item

    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 10), key="id")
    with pytest.raises(PipelineError, match=r"cannot be shipped .* step 'guarded' .*lock"):
        run_quietly(
            ray_pipelines.double >> guarded,
            source,
            run_dir=tmp_path / "run",
            backend=hr.Ray(workers=2),
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("source", "sink", "words"),
    [
        ((i for i in range(5)), None, "size must be known"),
        ([1, 2, 3], print, "cannot call a function of this process"),
    ],
)
def test_what_cannot_be_split_is_refused(
    tmp_path: Path, source: Any, sink: Any, words: str
) -> None:
    with pytest.raises(PipelineError, match=words):
        run_quietly(
            ray_pipelines.double,
            source,
            sink=sink,
            run_dir=tmp_path / "run",
            backend=hr.Ray(workers=2),
        )


def test_the_plan_read_back_is_checked() -> None:
    assert ShardPlan.split(10, 4).bounds == ((0, 4), (4, 8), (8, 10))
    with pytest.raises(hr.HeadraceError, match="gap or overlap"):
        ShardPlan.from_json([[0, 4], [5, 10]], "here")
    with pytest.raises(hr.HeadraceError, match="not a list of ranges"):
        ShardPlan.from_json([[0, "4"]], "here")


def test_a_run_resumes_only_on_the_backend_it_was_started_on(
    local_ray: None, tmp_path: Path
) -> None:
    source = hr.read_jsonl(write_items(tmp_path / "in.jsonl", 60), key="id")
    for started, then in ((None, hr.Ray(workers=2)), (hr.Ray(workers=2, shard_size=20), None)):
        run_dir = tmp_path / f"run-{started is None}"
        options: dict[str, Any] = {"run_dir": run_dir, "progress": False}
        hr.run(ray_pipelines.double, source, backend=started, **options)
        with pytest.raises(hr.ResumeMismatch, match="resume it the same way"):
            hr.run(ray_pipelines.double, source, backend=then, **options)


def test_the_progress_bar_moves_with_what_running_shards_commit(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards of 400 items, each about two seconds of work: the bar shows counts
    between the shards' ends (read from the running shards' stores), never going back."""
    import asyncio

    from headrace.cluster import driver

    samples: list[int] = []

    async def sample(counts: Any, finished: asyncio.Event, **_: Any) -> None:
        while not finished.is_set():
            samples.append(counts().done)
            await asyncio.sleep(0.1)
        samples.append(counts().done)

    monkeypatch.setattr(driver, "run_progress", sample)
    hr.run(
        ray_pipelines.slow_double,
        hr.read_jsonl(write_items(tmp_path / "in.jsonl", 800), key="id"),
        run_dir=tmp_path / "run",
        backend=hr.Ray(workers=2, shard_size=400),
        progress=True,
    )
    assert samples[-1] == 800
    assert samples == sorted(samples)
    assert set(samples) - {0, 400, 800}, samples  # moved while the shards ran


def test_a_step_pinned_to_a_gpu_is_refused_when_the_workers_get_none(tmp_path: Path) -> None:
    pinned = hr.models.embed(device="cuda")  # nothing loads until a run binds it
    with pytest.raises(PipelineError, match=r"step 'embed' runs on 'cuda', but the workers"):
        run_quietly(
            pinned,
            [{"id": "a", "text": "hello"}],
            key="id",
            run_dir=tmp_path / "run",
            backend=hr.Ray(workers=1),
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written
