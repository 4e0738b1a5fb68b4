"""Every kind of source splits across workers as a run on one machine reads it: CSV,
Parquet (by row group) and directories give the same outputs, and a key that repeats
across shards meets the duplicate-key policy as it would on one machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray_pipelines

import headrace as hr

pytestmark = pytest.mark.slow


def _both(step: Any, source: Any, tmp_path: Path, **options: Any) -> list[Any]:
    """The results of a local run and of a run on Ray (3 workers' worth of shards)."""
    results = []
    for name, backend in (("local", None), ("ray", hr.Ray(workers=2, shard_size=30))):
        result = hr.run(
            step,
            source,
            sink=hr.write_jsonl(tmp_path / f"{name}.jsonl"),
            run_dir=tmp_path / name,
            progress=False,
            backend=backend,
            **options,
        )
        lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        dead = sorted((d.index, d.message) for d in result.dead_letters)
        counts = (result.items_in, result.items_out, result.items_dead)
        results.append((lines, dead, counts, result.metrics.items_duplicate))
    return results


@pytest.mark.parametrize("policy", ["error", "first", "suffix"])
def test_a_key_repeated_across_shards_meets_the_policy_as_on_one_machine(
    local_ray: None, tmp_path: Path, policy: str
) -> None:
    rows = [{"id": f"k{n % 45}", "n": n} for n in range(100)]  # k0..k9 three times, in 3 shards
    rows[50]["id"] = "k1#2"  # looks like a suffixed key
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    local, on_ray = _both(
        ray_pipelines.double, hr.read_jsonl(path, key="id"), tmp_path, duplicates=policy
    )
    assert on_ray == local
    _, dead, (items_in, out, _), dropped = on_ray
    if policy == "error":
        repeated = [message for _, message in dead if "duplicate key" in message]
        assert len(repeated) == 54
        assert repeated[0] == f"{path}:46: duplicate key 'k0' (an earlier record has it)"
    if policy == "first":
        assert (out, dropped) == (46 - 1, 54)  # one of the 46 distinct keys fails in the step
    if policy == "suffix":
        assert items_in == 100


def test_csv_parquet_and_directory_sources_split_as_one_machine_reads_them(
    local_ray: None, tmp_path: Path
) -> None:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(
        "id,text\n" + "".join(f'r{n},"line {n}\nsecond"\n' for n in range(90)) + "bad\n"
    )
    parquet_path = tmp_path / "in.parquet"
    table = pa.table({"id": [f"p{n}" for n in range(100)], "n": list(range(100))})
    pq.write_table(table, parquet_path, row_group_size=16)
    folder = tmp_path / "docs"
    for n in range(70):
        (folder / f"d{n % 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{n % 4}" / f"{n}.txt").write_text(f"document {n}")
    for name, source in (
        ("csv", hr.read_csv(csv_path, key="id")),
        ("parquet", hr.read_parquet(parquet_path, key="id")),
        ("dir", hr.read_dir(folder)),
    ):
        (tmp_path / name).mkdir()
        local, on_ray = _both(ray_pipelines.echo, source, tmp_path / name)
        assert on_ray == local, name
        assert len(on_ray[0]) == {"csv": 90, "parquet": 100, "dir": 70}[name]


def test_a_list_whose_keys_repeat_across_shards_is_scanned_by_the_driver(
    local_ray: None, tmp_path: Path
) -> None:
    rows = [{"id": f"k{n % 45}", "n": n} for n in range(100)]
    local, on_ray = _both(ray_pipelines.double, rows, tmp_path, key="id", duplicates="first")
    assert on_ray == local
    assert on_ray[3] == 55  # dropped: every repeat, across the four shards
