"""A new run never overwrites output it did not write; a resume checks that the sink
still holds what was committed, and --rebuild-sink recomputes what was lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import headrace as hr
from headrace.errors import OutputExists, SinkDamaged

ITEMS = 40


@hr.step
def square(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "square": row["n"] ** 2}


def make_source(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"k{n:02d}", "n": n}) + "\n" for n in range(ITEMS)))
    return path


SINKS: dict[str, Callable[[Path], Any]] = {
    "jsonl": lambda d: hr.write_jsonl(d / "out.jsonl"),
    "csv": lambda d: hr.write_csv(d / "out.csv"),
    "batches": lambda d: hr.write_batches(d / "out", items_per_file=10),
    "parquet": lambda d: hr.write_parquet(d / "out", items_per_file=10),
}


def keys_in(kind: str, tmp_path: Path) -> list[str]:
    if kind == "jsonl":
        return [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    if kind == "csv":
        return [x.split(",")[0] for x in (tmp_path / "out.csv").read_text().splitlines()[1:]]
    if kind == "batches":
        files = sorted((tmp_path / "out").glob("batch_*.jsonl"))
        return [json.loads(x)["id"] for f in files for x in f.read_text().splitlines()]
    files = sorted((tmp_path / "out").glob("part-*.parquet"))
    return [r["id"] for f in files for r in pq.read_table(f).to_pylist()]


def go(kind: str, tmp_path: Path, **options: Any) -> hr.RunResult:
    return hr.run(
        square,
        hr.read_jsonl(make_source(tmp_path), key="id"),
        sink=SINKS[kind](tmp_path),
        run_dir=options.pop("run_dir", tmp_path / "run"),
        progress=False,
        **options,
    )


def damage(kind: str, tmp_path: Path, how: str) -> None:
    if kind in ("jsonl", "csv"):
        path = tmp_path / f"out.{kind}"
        data = path.read_bytes()
        if how == "deleted":
            path.unlink()
        elif how == "shortened":
            path.write_bytes(data[: len(data) // 2])
        else:  # edited in place, same length
            path.write_bytes(data.replace(b"k1", b"x1", 1))
    else:
        parts = sorted(p for p in (tmp_path / "out").iterdir() if p.is_file())
        if how == "deleted":
            parts[0].unlink()
        elif how == "shortened":
            parts[0].write_bytes(parts[0].read_bytes()[:10])
        elif kind == "batches":  # edited in place, same size
            parts[0].write_bytes(parts[0].read_bytes().replace(b"k0", b"x0", 1))
        else:
            _same_size_parquet(parts[0])


def _same_size_parquet(part: Path) -> None:
    """Replace ``part`` by a valid Parquet file of the same size with a wrong value."""
    import pyarrow as pa

    size = part.stat().st_size
    table = pq.read_table(part)
    column = table.schema.get_field_index("square")
    field = table.schema.field(column)
    original = table.column(column).to_pylist()
    for wrong in range(original[0] + 1, original[0] + 200):
        edited = table.set_column(column, field, pa.array([wrong, *original[1:]], field.type))
        candidate = part.with_name("candidate")
        pq.write_table(edited, candidate)
        if candidate.stat().st_size == size:
            candidate.replace(part)
            return
    raise AssertionError("no same-size edit found")


@pytest.mark.parametrize("kind", SINKS)
def test_a_new_run_refuses_existing_output_unless_asked_to_overwrite(
    kind: str, tmp_path: Path
) -> None:
    go(kind, tmp_path, run_dir=tmp_path / "first")
    before = sorted(keys_in(kind, tmp_path))
    refused = r"that this run did not write; pass --overwrite \(overwrite=True in Python\)"
    with pytest.raises(OutputExists, match=refused):
        go(kind, tmp_path, run_dir=tmp_path / "second")
    assert sorted(keys_in(kind, tmp_path)) == before  # left exactly as it was
    # the refused run left no run behind: the same command with overwrite=True just runs
    result = go(kind, tmp_path, run_dir=tmp_path / "second", overwrite=True)
    assert result.items_out == ITEMS
    keys = keys_in(kind, tmp_path)
    assert len(keys) == len(set(keys)) == ITEMS


@pytest.mark.parametrize("how", ["deleted", "shortened", "edited"])
@pytest.mark.parametrize("kind", SINKS)
def test_a_resume_refuses_a_damaged_sink_and_rebuild_recomputes_it(
    kind: str, how: str, tmp_path: Path
) -> None:
    go(kind, tmp_path)
    damage(kind, tmp_path, how)
    with pytest.raises(SinkDamaged, match=r"--rebuild-sink"):
        go(kind, tmp_path, resume=True)
    result = go(kind, tmp_path, resume=True, rebuild_sink=True)
    assert result.items_out == ITEMS
    keys = keys_in(kind, tmp_path)
    assert sorted(keys) == [f"k{n:02d}" for n in range(ITEMS)]  # every key, once
    again = go(kind, tmp_path, resume=True)  # and the rebuilt sink verifies
    assert again.metrics.items_skipped == ITEMS
    if how != "deleted":
        aside = [p.name for p in tmp_path.glob("*damaged-*")]
        assert aside, "the damaged output was set aside beside the output, not deleted"
    if kind in ("batches", "parquet"):  # the output reads as users read it: nothing inside
        assert [p for p in (tmp_path / "out").iterdir() if p.is_dir()] == []
    if kind == "parquet":
        import pyarrow.dataset as ds

        assert pq.read_table(tmp_path / "out").num_rows == ITEMS
        assert ds.dataset(tmp_path / "out").count_rows() == ITEMS


@pytest.mark.parametrize("kind", SINKS)
def test_a_resume_moves_what_it_did_not_commit_aside_and_deletes_nothing(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    go(kind, tmp_path)
    if kind in ("jsonl", "csv"):
        path = tmp_path / f"out.{kind}"
        stray = b'{"id": "users-own-line"}\n'
        path.write_bytes(path.read_bytes() + stray)
    else:
        first = sorted((tmp_path / "out").iterdir())[0]
        name = "part-99999.parquet" if kind == "parquet" else "batch_9999.jsonl"
        stray = first.read_bytes()
        (tmp_path / "out" / name).write_bytes(stray)
    with caplog.at_level("WARNING", logger="headrace.run"):
        again = go(kind, tmp_path, resume=True)
    assert again.metrics.items_skipped == ITEMS
    assert sorted(keys_in(kind, tmp_path)) == [f"k{n:02d}" for n in range(ITEMS)]
    (aside,) = tmp_path.glob("out*.uncommitted-*")
    held = (
        aside.read_bytes() if aside.is_file() else b"".join(p.read_bytes() for p in aside.iterdir())
    )
    assert held == stray  # kept, byte for byte
    (line,) = [r.getMessage() for r in caplog.records if "uncommitted" in r.getMessage()]
    assert str(aside) in line


def test_rebuild_keeps_dead_letters_finished(tmp_path: Path) -> None:
    calls: list[int] = []

    @hr.step
    def picky(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["n"])
        if row["n"] % 10 == 3:
            raise ValueError("no threes")
        return {"id": row["id"]}

    def once(**options: Any) -> hr.RunResult:
        return hr.run(
            picky,
            hr.read_jsonl(make_source(tmp_path), key="id"),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
            progress=False,
            **options,
        )

    once()
    (tmp_path / "out.jsonl").unlink()
    calls.clear()
    result = once(resume=True, rebuild_sink=True)
    assert result.items_out == ITEMS - 4 and sorted(calls) == [
        n for n in range(ITEMS) if n % 10 != 3
    ]


def test_the_cli_names_the_damage_in_one_line_and_rebuilds(tmp_path: Path) -> None:
    make_source(tmp_path)
    (tmp_path / "job.py").write_text(
        "import headrace as hr\n@hr.step\ndef same(r):\n    return r\npipeline = same\n"
    )
    cli = [sys.executable, "-m", "headrace"]
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    args = ["run", "job:pipeline", "--input", "in.jsonl", "--key", "id", "--output", "out.jsonl"]

    def call(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *extra], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert call(*args, "--run-dir", "a").returncode == 0
    refused = call(*args, "--run-dir", "b")
    again = call(*args, "--run-dir", "b")  # refused the same way, not "already holds a run"
    assert again.returncode == 1 and "that this run did not write" in again.stderr
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: out.jsonl already holds {(tmp_path / 'out.jsonl').stat().st_size:,} bytes that "
        "this run did not write; pass --overwrite (overwrite=True in Python) to replace it, "
        "or choose another path"
    ]
    (tmp_path / "out.jsonl").write_text("")
    damaged = call("resume", "a")
    assert damaged.returncode == 1 and "--rebuild-sink" in damaged.stderr
    assert len(damaged.stderr.strip().splitlines()) == 1
    assert call("resume", "a", "--rebuild-sink").returncode == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == ITEMS
