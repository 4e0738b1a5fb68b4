"""``rerun``: the items whose stored output or dead letter matches a condition run again,
their new outputs replace the old, every other output stays; each key once in every
sink kind, with both run stores, killed at any moment."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from services import JOBS, run_quietly
from test_chaos import SINKS, _output, _outputs, sessions_calling, table_rows

import headrace as hr
from headrace.errors import ExpressionError, HeadraceError, PipelineError
from headrace.store import StoreLocation

sys.path.insert(0, str(JOBS))
from rerun_job import pipeline

ITEMS = 300
KILLS = int(os.environ.get("HEADRACE_CHAOS_KILLS", "12")) // 3  # 4 a sink kind in CI
WHERE = "(v == 1 and n % 3 == 0) or status == 'dead'"  # matches no version-2 output


def _expected_versions() -> dict[str, int]:
    """Each key's version after the rerun: 2 where the condition chose it."""
    return {f"item-{n:05d}": 2 if n % 3 == 0 or n % 50 == 13 else 1 for n in range(ITEMS)}


def _write_input(path: Path) -> None:
    path.write_text(
        "".join(json.dumps({"id": f"item-{n:05d}", "n": n}) + "\n" for n in range(ITEMS))
    )


def _launch(args: list[str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(JOBS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(JOBS / "rerun_job.py"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(args: list[str]) -> None:
    job = _launch(args)
    _, stderr = job.communicate(timeout=240)
    assert job.returncode == 0, stderr.decode()


def _versions(kind: str, output: str) -> list[tuple[str, int]]:
    """(key, version) of every row the sink holds, in its order."""
    rows = _outputs_with_version(kind, output)
    return [(str(row["id"]), int(row["v"])) for row in rows]


def _outputs_with_version(kind: str, output: str) -> list[dict[str, Any]]:
    if kind in ("sqlite", "postgresql"):
        return table_rows(output, ("id", "v"))
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(output).to_pylist())
    if kind == "csv":
        import csv

        with open(output, newline="") as handle:
            return list(csv.DictReader(handle))
    return _outputs(kind, output)


def _first_run(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> tuple[Path, str, Path, list[str]]:
    """The whole input run once at version 1 into a ``kind`` sink: the run directory,
    the sink's output, the calls log, and the job's arguments before the version."""
    run_dir = tmp_path / request.getfixturevalue("run_name")
    source, calls = tmp_path / "in.jsonl", tmp_path / "calls.log"
    output = _output(kind, tmp_path, request)
    _write_input(source)
    common = [str(run_dir), str(source), kind, output, str(calls)]
    _finish([*common, "1"])
    return run_dir, output, calls, common


def _store(run_dir: Path, kind: str, output: str) -> Any:
    return StoreLocation(run_dir, output.split(" ")[0] if kind == "postgresql" else None).open()


@pytest.mark.slow
@pytest.mark.parametrize("kind", SINKS)
def test_a_rerun_replaces_exactly_the_chosen_outputs(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    run_dir, output, calls, common = _first_run(tmp_path, kind, request)
    before = dict(_versions(kind, output))
    _finish([*common, "2", WHERE])

    after = _versions(kind, output)
    keys = [key for key, _ in after]
    assert len(keys) == len(set(keys)) == ITEMS  # each key once; the dead letters now in
    assert dict(after) == _expected_versions()
    assert all(before[k] == 1 for k, v in after if v == 1)  # the others untouched
    store = _store(run_dir, kind, output)
    try:
        status = store.status()
        assert (status.done, status.dead, status.sessions) == (ITEMS, 0, 2)
        ((_, _, forced, note),) = [s for s in store.sessions() if s[0] == 2]
        assert forced and note is not None and note.startswith(f"rerun where {WHERE}")
        committed_in = store.finished_sessions()
    finally:
        store.close()
    chosen = {k for k, v in _expected_versions().items() if v == 2}
    assert {k for k, n in committed_in.items() if n == 2} == chosen  # both sessions kept
    # the second session computed the chosen items and nothing else
    second = [line.split()[1] for line in calls.read_text().splitlines() if "session" not in line]
    assert sorted(second[ITEMS:]) == sorted(chosen)
    # and a second rerun with the same condition chooses nothing: its answers do not match
    _finish([*common, "2", WHERE])
    assert _versions(kind, output) == after


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", SINKS)
def test_a_rerun_killed_at_random_moments_ends_with_each_key_once(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("HEADRACE_CHAOS_SEED", str(random.SystemRandom().randrange(10**9))))
    print(f"rerun chaos seed {seed} ({kind})")
    rng = random.Random(seed)
    run_dir, output, calls, common = _first_run(tmp_path, kind, request)

    # up to KILLS kills at random moments; a busy machine may let the rerun finish
    # before the last of them (then it ended, which is what the kills were for)
    kills, ended = 0, False
    for _ in range(KILLS + 1):
        job = _launch([*common, "2", WHERE])
        try:
            job.wait(timeout=rng.uniform(0.3, 2.5) if kills < KILLS else 240)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
            kills += 1
            continue
        assert job.returncode == 0, f"seed {seed}: " + job.stderr.read().decode()  # type: ignore[union-attr]
        ended = True
        break
    assert ended and kills >= 1, f"seed {seed}: {kills} kills, ended {ended}"

    after = _versions(kind, output)
    keys = [key for key, _ in after]
    assert len(keys) == len(set(keys)) == ITEMS, f"seed {seed}: a key lost or doubled"
    assert dict(after) == _expected_versions(), f"seed {seed}"
    store = _store(run_dir, kind, output)
    try:
        assert store.rerun_items() == {}
        committed_in = store.finished_sessions()
    finally:
        store.close()
    # no item was computed again in a session after the one that committed it
    called_in = sessions_calling(calls)
    recomputed = {k: s for k, s in called_in.items() if max(s) > committed_in[k]}
    assert recomputed == {}, f"seed {seed}: finished items computed again: {recomputed}"


def _run(tmp_path: Path, version: int, **options: Any) -> hr.RunResult:
    source = tmp_path / "in.jsonl"
    if not source.exists():
        _write_input(source)
    import rerun_job

    rerun_job.CALLS = os.open(tmp_path / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    sink = options.pop("sink", None) or hr.write_jsonl(tmp_path / "out.jsonl")
    return run_quietly(
        pipeline(version),
        hr.read_jsonl(source, key="id"),
        sink=sink,
        run_dir=tmp_path / "run",
        **options,
    )


def _jsonl(tmp_path: Path) -> list[tuple[str, int]]:
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    return [(json.loads(line)["id"], json.loads(line)["v"]) for line in lines]


@pytest.mark.parametrize("where", ["v == 1 and n % 3 == 0", "status == 'dead'"])
@pytest.mark.parametrize("kill_at", ["rewrite_written", "store_committed"])
def test_a_kill_inside_the_take_out_leaves_the_old_sink_or_the_new_one(
    tmp_path: Path, kill_at: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two moments a kill can split the take-out: the rewritten file written but not
    committed (the old sink stays, the file beside it is dropped), and committed but not
    yet in place (the next session puts it there first)."""
    _run(tmp_path, 1)
    from headrace.io.jsonl import JsonlSink
    from headrace.store.sql import SqlRunStore

    class Killed(BaseException):
        pass

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    target = (
        (SqlRunStore, "mark_rerun")
        if kill_at == "rewrite_written"
        else (JsonlSink, "finish_rewrite")
    )
    with monkeypatch.context() as patched:
        patched.setattr(*target, killed)
        with pytest.raises(Killed):
            _run(tmp_path, 2, rerun=where)
    rewritten = tmp_path / ".out.jsonl.rewrite"
    assert rewritten.exists()  # the kill left it behind
    if kill_at == "store_committed":  # the chosen items are marked: status says so
        from typer.testing import CliRunner

        from headrace.cli import app

        shown = CliRunner().invoke(app, ["status", str(tmp_path / "run")]).output
        assert "chosen items not finished again" in shown, shown
    result = _run(tmp_path, 2, rerun=where)
    assert not rewritten.exists()
    rows = _jsonl(tmp_path)
    dead = ITEMS // 50  # n % 50 == 13: dead letters unless chosen
    assert len({k for k, _ in rows}) == len(rows) == ITEMS - (0 if "dead" in where else dead)
    chosen = {k for k, v in rows if v == 2}
    expected = {
        f"item-{n:05d}"
        for n in range(ITEMS)
        if (n % 3 == 0 and n % 50 != 13 if "n % 3" in where else n % 50 == 13)
    }
    assert chosen == expected and result.items_out == len(expected)


def test_the_condition_is_checked_before_anything_runs(tmp_path: Path) -> None:
    _run(tmp_path, 1)
    before = (tmp_path / "out.jsonl").read_bytes()
    with pytest.raises(PipelineError, match="does not parse"):
        _run(tmp_path, 2, rerun="v ==")
    with pytest.raises(ExpressionError, match="names confidence, which no item has"):
        _run(tmp_path, 2, rerun="confidence < 0.5")
    with pytest.raises(ExpressionError, match="on the item 'item-00000'"):
        _run(tmp_path, 2, rerun="n > 'a'")  # a number and a text: the first output fails
    assert (tmp_path / "out.jsonl").read_bytes() == before  # nothing taken out
    store = StoreLocation(tmp_path / "run", None).open()
    try:
        assert store.rerun_items() == {}
    finally:
        store.close()


def test_a_rerun_needs_a_sink_that_gives_its_outputs_back(tmp_path: Path) -> None:
    got: list[Any] = []
    _run(tmp_path, 1, sink=got.append)
    with pytest.raises(HeadraceError, match="cannot give back what it was handed"):
        _run(tmp_path, 2, sink=got.append, rerun="v == 1")


def test_a_sink_that_lost_a_record_is_not_matched_to_the_wrong_items(tmp_path: Path) -> None:
    _run(tmp_path, 1)
    store = StoreLocation(tmp_path / "run", None).open()
    try:  # tampered positions: the second output claims the first one's place
        first, second = list(store.output_positions())[:2]
    finally:
        store.close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    db.execute("UPDATE items SET ord = ? WHERE idx = ?", (first[0] + 5, second[1]))
    db.commit()
    db.close()
    with pytest.raises(HeadraceError, match="does not hold one record for each output"):
        _run(tmp_path, 2, rerun="v == 1")


def test_a_rerun_of_a_run_that_never_was_is_refused(tmp_path: Path) -> None:
    with pytest.raises(hr.errors.ResumeMismatch, match="no run to resume"):
        _run(tmp_path, 2, rerun="v == 1")
    with pytest.raises(PipelineError, match="cannot also start it again"):
        _run(tmp_path, 2, rerun="v == 1", fresh=True)


def test_a_run_from_before_positions_were_kept_is_refused_whole(tmp_path: Path) -> None:
    _run(tmp_path, 1)
    import sqlite3

    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    db.execute("ALTER TABLE items DROP COLUMN ord")  # as an older headrace made it
    db.commit()
    db.close()
    before = (tmp_path / "out.jsonl").read_bytes()
    with pytest.raises(HeadraceError, match="from before output positions were kept"):
        _run(tmp_path, 2, rerun="v == 1")
    assert (tmp_path / "out.jsonl").read_bytes() == before
    resumed = _run(tmp_path, 1, resume=True)  # the old run itself still resumes
    assert resumed.items_out == 0


def test_a_rerun_on_a_cluster_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="rerun= on a cluster"):
        hr.engine.run_options.RunOptions.of(
            rerun="v == 1", run_dir=tmp_path, backend=hr.Ray(workers=2)
        )


def test_a_rerun_that_chooses_nothing_changes_nothing(tmp_path: Path) -> None:
    _run(tmp_path, 1)
    before = (tmp_path / "out.jsonl").read_bytes()
    store = StoreLocation(tmp_path / "run", None).open()
    try:
        fingerprint = store.fingerprint()
    finally:
        store.close()
    result = _run(tmp_path, 2, rerun="v == 5")
    assert result.items_in == 0 and (tmp_path / "out.jsonl").read_bytes() == before
    store = StoreLocation(tmp_path / "run", None).open()
    try:
        assert store.fingerprint() == fingerprint  # the version-2 pipeline not adopted
    finally:
        store.close()
