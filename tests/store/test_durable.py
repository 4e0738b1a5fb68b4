import json
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.sim import serve
from headrace.store.sqlite import SqliteRunStore


def write_input(path: Path, rows: list[Any], raw_lines: list[str] = ()) -> Path:  # type: ignore[assignment]
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in raw_lines:
            handle.write(line + "\n")
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@hr.step
def double(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "n2": row["n"] * 2}


def run(source: Any, tmp: Path, **options: Any) -> hr.RunResult:
    options.setdefault("sink", hr.write_jsonl(tmp / "out.jsonl"))
    return hr.run(double, source, run_dir=tmp / "run", progress=False, **options)


ROWS = [{"id": f"k{i}", "n": i} for i in range(20)]


# --- sinks: what a kill between the sink's write and the store's commit leaves ----------


def test_jsonl_sink_cuts_uncommitted_output_on_open(tmp_path: Path) -> None:
    sink = hr.write_jsonl(tmp_path / "out.jsonl")
    sink.open({})
    state = sink.write([sink.encode("1", {"a": 1}), sink.encode("2", {"a": 2})])
    sink.write([sink.encode("3", {"a": 3})])  # written, never committed
    sink.close()
    reopened = hr.write_jsonl(tmp_path / "out.jsonl")
    reopened.open(state)
    reopened.close()
    assert lines(tmp_path / "out.jsonl") == [{"a": 1}, {"a": 2}]


def test_batch_sink_removes_uncommitted_and_torn_files_on_open(tmp_path: Path) -> None:
    sink = hr.write_batches(tmp_path / "out")
    sink.open({})
    state = sink.write([sink.encode("1", {"a": 1})])
    sink.write([sink.encode("2", {"a": 2})])  # renamed into place, never committed
    (tmp_path / "out" / ".batch_0002.jsonl.tmp").write_text('{"a":')  # torn mid-write
    (tmp_path / "out" / "notes.txt").write_text("the user's own file")
    hr.write_batches(tmp_path / "out").open(state)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batch_0000.jsonl", "notes.txt"]


# --- runs and resumes --------------------------------------------------------------------


def test_a_durable_run_records_every_outcome_and_writes_dead_letters(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS, ["{truncated", '{"n": 3}', "[1, 2]"])
    result = run(hr.read_jsonl(source, key="id"), tmp_path)
    assert (result.items_in, result.items_out, result.items_dead) == (23, 20, 3)
    assert lines(tmp_path / "out.jsonl") == [{"id": f"k{i}", "n2": 2 * i} for i in range(20)]
    dead = lines(tmp_path / "run" / "dead.jsonl")
    assert [(d["step"], d["error_type"], d["message"]) for d in dead] == [
        (
            "<source>",
            "BadInput",
            f"{source}:21: not valid JSON (at column 2)",
        ),
        ("<source>", "BadInput", f"{source}:22: missing key field 'id'"),
        (
            "<source>",
            "BadInput",
            f"{source}:23: expected a JSON object with the key field 'id', got list",
        ),
    ]
    assert dead[0]["item"] == "{truncated"  # the raw line, as a JSON string
    assert result.dead_letters[1].item == '{"n": 3}'
    status = SqliteRunStore.in_dir(tmp_path / "run").status()
    assert (status.done, status.dead, status.filtered, status.watermark) == (20, 3, 0, 23)


def test_a_finished_run_resumed_computes_nothing(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    again = run(hr.read_jsonl(source, key="id"), tmp_path, resume=True)
    assert (again.items_in, again.metrics.items_skipped) == (0, 20)
    assert again.metrics.step("double").calls == 0
    assert len(lines(tmp_path / "out.jsonl")) == 20


def test_starting_over_an_existing_run_with_resume_false_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    with pytest.raises(hr.HeadraceError) as caught:
        run(hr.read_jsonl(source, key="id"), tmp_path, resume=False)
    assert str(caught.value) == (
        f"{tmp_path / 'run'} already holds a run; resume it (`headrace resume "
        f"{tmp_path / 'run'}`; resume=True in Python), start it again (--fresh; fresh=True), "
        "or choose another run_dir"
    )


def test_by_default_a_run_resumes_when_it_exists_and_starts_when_not(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    first = run(hr.read_jsonl(source, key="id"), tmp_path)
    assert first.items_out == 20
    again = run(hr.read_jsonl(source, key="id"), tmp_path)
    assert (again.items_in, again.metrics.items_skipped) == (0, 20)
    assert len(lines(tmp_path / "out.jsonl")) == 20


def test_fresh_discards_the_run_and_its_output_and_starts_again(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    (tmp_path / "run" / "dead.jsonl").write_text('{"stale": true}\n')
    again = run(hr.read_jsonl(source, key="id"), tmp_path, fresh=True)
    assert (again.items_in, again.items_out, again.metrics.items_skipped) == (20, 20, 0)
    assert len(lines(tmp_path / "out.jsonl")) == 20  # replaced, not appended
    assert (tmp_path / "run" / "dead.jsonl").read_text() == ""
    with pytest.raises(hr.PipelineError, match="cannot also resume"):
        run(hr.read_jsonl(source, key="id"), tmp_path, fresh=True, resume=True)


def test_fresh_is_refused_while_another_session_runs_it(tmp_path: Path) -> None:
    from headrace.store import StoreLocation

    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    other = StoreLocation(tmp_path / "run", None).open()
    other.acquire_lease()  # a live session holds the run
    try:
        with pytest.raises(hr.HeadraceError, match="another session"):
            run(hr.read_jsonl(source, key="id"), tmp_path, fresh=True)
    finally:
        other.release_lease()
        other.close()
    assert len(lines(tmp_path / "out.jsonl")) == 20  # nothing was discarded


def test_a_changed_pipeline_is_refused_naming_what_changed(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    with serve() as sim:
        rehearsal = hr.llm.Client(base_url=sim.url)
        real = hr.llm.Client(base_url=sim.url + "/", identity="https://api.example.com/v1")
        for llm, model in ((rehearsal, "m1"), (real, "m1"), (rehearsal, "m2")):
            step = hr.llm.complete(prompt="{id}", client=llm, model=model, name="say")
            options = {"resume": True} if llm is not rehearsal or model != "m1" else {}
            try:
                hr.run(
                    step,
                    hr.read_jsonl(source, key="id"),
                    sink=hr.write_jsonl(tmp_path / "out.jsonl"),
                    run_dir=tmp_path / "run",
                    progress=False,
                    **options,
                )
            except hr.ResumeMismatch as exc:
                message = str(exc)
                assert "--force" in message and "--fresh" in message
                if llm is real:
                    assert f"step 'say': endpoint {sim.url!r} then, " in message
                    assert "'https://api.example.com/v1' now" in message
                else:
                    assert "step 'say': model 'm1' then, 'm2' now" in message
            else:
                assert llm is rehearsal and model == "m1"


def test_resuming_nothing_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    with pytest.raises(hr.ResumeMismatch, match="there is no run to resume in"):
        run(hr.read_jsonl(source, key="id"), tmp_path, resume=True)


def test_a_changed_pipeline_is_refused_unless_forced_and_the_force_is_recorded(
    tmp_path: Path,
) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    changed = double.with_options(version="2")
    options = {
        "run_dir": tmp_path / "run",
        "progress": False,
        "resume": True,
        "sink": hr.write_jsonl(tmp_path / "out.jsonl"),
    }
    with pytest.raises(hr.ResumeMismatch, match="the pipeline changed since the run in"):
        hr.run(changed, hr.read_jsonl(source, key="id"), **options)
    hr.run(changed, hr.read_jsonl(source, key="id"), force=True, **options)
    store = SqliteRunStore.in_dir(tmp_path / "run")
    [(session, note)] = store.forced_sessions()
    assert session == 2 and note is not None  # the refused resume started no session
    assert note.startswith("pipeline fingerprint changed from ")
    assert store.fingerprint() == changed.fingerprint


def test_a_changed_source_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    with pytest.raises(hr.ResumeMismatch, match="the source differs from the stored run"):
        run(hr.read_jsonl(source, key="n"), tmp_path, resume=True)


def test_a_source_whose_items_moved_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS[:10])
    # a stored run that finished items 5..9 only, as a kill could leave it
    store = SqliteRunStore.in_dir(tmp_path / "run")
    definition = {
        "pipeline": double.name,
        "source": hr.read_jsonl(source, key="id").describe(),
        "sink": hr.write_jsonl(tmp_path / "out.jsonl").describe(),
        "options": {"ordered": False, "on_error": "dead_letter", "on_bad_input": "dead_letter"},
    }
    store.create(definition, double.fingerprint)
    session = store.start_session()
    store.commit(
        [(i, f"k{i}", "done", None) for i in range(5, 10)],
        [],
        watermark=0,
        sink_state={"offset": 0},
        session=session,
    )
    store.close()
    write_input(source, [{"id": "new", "n": 0}, *ROWS[:10]])  # a row added at the top
    with pytest.raises(hr.ResumeMismatch, match="the source changed: item 5 has key 'k4'"):
        run(hr.read_jsonl(source, key="id"), tmp_path, resume=True)


def test_stop_on_bad_input_commits_what_finished_and_raises(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS[:5], ["{broken"])
    with pytest.raises(hr.BadInput) as caught:
        run(hr.read_jsonl(source, key="id"), tmp_path, on_bad_input="stop")
    assert str(caught.value) == f"{source}:6: not valid JSON (at column 2)"
    assert caught.value.result.items_out == 5
    assert len(lines(tmp_path / "out.jsonl")) == 5  # whole items only, all committed


def test_an_empty_file_is_a_run_of_nothing(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", [])
    result = run(hr.read_jsonl(source, key="id"), tmp_path)
    assert (result.items_in, result.items_out) == (0, 0)
    assert lines(tmp_path / "out.jsonl") == []


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(hr.SourceError) as caught:
        run(hr.read_jsonl(tmp_path / "nope.jsonl", key="id"), tmp_path)
    assert f"cannot read {tmp_path / 'nope.jsonl'}: No such file or directory" in str(caught.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.jsonl").exists()


def test_retry_dead_reruns_only_the_dead_letters(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    broken = {"on": True}
    calls: list[str] = []

    def flaky(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["id"])
        if broken["on"] and row["n"] % 7 == 3:
            raise RuntimeError("upstream down")
        return {"id": row["id"]}

    options = {
        "run_dir": tmp_path / "run",
        "progress": False,
        "sink": hr.write_jsonl(tmp_path / "out.jsonl"),
    }
    first = hr.run(hr.step(flaky), hr.read_jsonl(source, key="id"), **options)
    assert sorted(d.item["id"] for d in first.dead_letters) == ["k10", "k17", "k3"]  # type: ignore[index]
    broken["on"], calls[:] = False, []
    retried = hr.run(hr.step(flaky), hr.read_jsonl(source, key="id"), retry_dead=True, **options)
    assert sorted(calls) == ["k10", "k17", "k3"]
    assert (retried.items_in, retried.items_out, retried.items_dead) == (3, 3, 0)
    assert sorted(row["id"] for row in lines(tmp_path / "out.jsonl")) == sorted(
        r["id"] for r in ROWS
    )
    status = SqliteRunStore.in_dir(tmp_path / "run").status()
    assert (status.done, status.dead) == (20, 0)
    assert lines(tmp_path / "run" / "dead.jsonl") == []


def test_plain_iterables_get_stable_default_keys_and_resume(tmp_path: Path) -> None:
    items = [{"id": f"k{i}", "n": i} for i in range(10)]
    run(items, tmp_path)
    again = run(items, tmp_path, resume=True)
    assert again.metrics.items_skipped == 10


def test_a_callable_sink_in_a_durable_run_gets_each_output_and_resume_skips_them(
    tmp_path: Path,
) -> None:
    got: list[Any] = []
    run_quietly(double, ROWS, sink=got.append, run_dir=tmp_path / "run")
    assert sorted(r["n2"] for r in got) == [2 * i for i in range(20)]
    again = run_quietly(double, ROWS, sink=got.append, run_dir=tmp_path / "run", resume=True)
    assert (again.metrics.items_skipped, len(got)) == (20, 20)
    status = SqliteRunStore.in_dir(tmp_path / "run").status()
    assert status.definition["sink"]["kind"] == "callback"


def test_an_output_that_is_not_json_is_a_dead_letter_of_the_sink(tmp_path: Path) -> None:
    result = run_quietly(
        hr.step(lambda row: {"id": row["id"], "bad": object()}),
        ROWS[:2],
        run_dir=tmp_path / "run",
    )
    assert [(d.step, d.error_type) for d in result.dead_letters] == [
        ("<sink>", "TypeError"),
        ("<sink>", "TypeError"),
    ]


def test_a_file_sink_works_without_a_run_dir(tmp_path: Path) -> None:
    result = run_quietly(double, ROWS, sink=hr.write_batches(tmp_path / "out", items_per_file=8))
    assert result.items_out == 20
    assert len(list((tmp_path / "out").glob("batch_*.jsonl"))) >= 1


def test_a_cancelled_run_waits_for_the_commit_in_flight_before_closing(tmp_path: Path) -> None:
    import asyncio
    import threading

    from headrace.store.writer import DurableWriter

    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    class SlowSink:
        flush_items, flush_interval_s, keeps_journal = 1, 0.01, False

        def describe(self) -> dict[str, Any]:
            return {"kind": "slow"}

        def open(self, state: dict[str, Any]) -> None:
            return None

        def encode(self, key: str, value: Any) -> Any:
            return value

        def write(self, records: list[Any], journal: bytes | None) -> dict[str, Any]:
            entered.set()
            release.wait(10)
            finished.set()
            return {}

        def close(self) -> None:
            return None

    async def scenario() -> None:
        writer = DurableWriter(None, SlowSink(), session=1, finished_above=set())
        task = asyncio.create_task(writer.run())
        writer.output(0, "k0", b"{}")
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()  # as Ctrl-C does, while the commit thread is inside the sink
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not finished.is_set()
        threading.Timer(0.2, release.set).start()
        # the session closes inside the loop, like this: it must wait for the commit
        writer.wait_idle()
        assert finished.is_set()

    asyncio.run(scenario())


def test_an_ordered_resume_after_a_gap_finishes_in_order(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS[:10], ["{broken"])
    first = run(hr.read_jsonl(source, key="id"), tmp_path, ordered=True)
    assert (first.items_out, first.items_dead) == (10, 1)
    # a stored run that finished items 2..4 only, as a kill could leave it
    store = SqliteRunStore.in_dir(tmp_path / "again")
    definition = SqliteRunStore.in_dir(tmp_path / "run").definition()
    assert definition is not None
    definition["sink"] = hr.write_jsonl(tmp_path / "again.jsonl").describe()
    store.create(definition, double.fingerprint)
    session = store.start_session()
    rows = [(i, f"k{i}", "done", None) for i in range(2, 5)]
    store.commit(rows, [], watermark=0, sink_state={"offset": 0}, session=session)
    store.close()
    resumed = run_quietly(
        double,
        hr.read_jsonl(source, key="id"),
        sink=hr.write_jsonl(tmp_path / "again.jsonl"),
        run_dir=tmp_path / "again",
        resume=True,
        ordered=True,
    )
    assert (resumed.items_out, resumed.metrics.items_skipped) == (7, 3)
    assert [r["id"] for r in lines(tmp_path / "again.jsonl")] == [
        f"k{i}" for i in (0, 1, 5, 6, 7, 8, 9)
    ]


REPEATED = [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "a", "n": 3}, {"id": "a", "n": 4}]


def test_a_repeated_key_is_a_dead_letter_by_default_or_stops_the_run(tmp_path: Path) -> None:
    result = run(REPEATED, tmp_path, key="id")
    assert (result.items_out, result.items_dead) == (2, 2)
    assert {(d.index, d.message, d.item) for d in result.dead_letters} == {
        (2, "record 3 of the source: duplicate key 'a' (an earlier record has it)",
         '{"id":"a","n":3}'),
        (3, "record 4 of the source: duplicate key 'a' (an earlier record has it)",
         '{"id":"a","n":4}'),
    }  # fmt: skip
    with pytest.raises(hr.BadInput, match="record 3 of the source: duplicate key 'a'"):
        run_quietly(double, REPEATED, key="id", on_bad_input="stop",
               run_dir=tmp_path / "stop")  # fmt: skip


def test_a_repeated_key_in_a_file_names_its_line_and_shows_the_record(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", REPEATED)
    result = run(hr.read_jsonl(source, key="id"), tmp_path)
    dead = sorted(result.dead_letters, key=lambda d: d.index)
    assert [d.message for d in dead] == [
        f"{source}:3: duplicate key 'a' (an earlier record has it)",
        f"{source}:4: duplicate key 'a' (an earlier record has it)",
    ]
    assert dead[0].item == '{"id":"a","n":3}'


def test_keep_first_drops_repeats_and_a_resume_still_skips_them(tmp_path: Path) -> None:
    result = run(REPEATED, tmp_path, key="id", duplicates="first")
    assert [r["n2"] for r in lines(tmp_path / "out.jsonl")] == [2, 4]
    assert (result.items_in, result.metrics.items_duplicate) == (2, 2)
    assert "(dropped 2 repeated keys)" in result.summary()
    status = SqliteRunStore.in_dir(tmp_path / "run").status()
    assert (status.duplicate, status.pending, status.watermark) == (2, 0, 4)
    again = run(REPEATED, tmp_path, key="id", duplicates="first", resume=True)
    assert (again.items_in, again.metrics.items_skipped) == (0, 4)


def test_suffix_keeps_every_record_under_its_own_key(tmp_path: Path) -> None:
    rows = [{"id": "a#2", "n": 5}, *REPEATED]  # a key that looks like a suffixed one
    result = run(rows, tmp_path, key="id", duplicates="suffix")
    assert result.items_out == 5
    keys = SqliteRunStore.in_dir(tmp_path / "run").finished_sessions()
    assert sorted(keys) == ["a", "a#2", "a#3", "a#4", "b"]


def test_positional_keys_are_not_checked_for_repeats(tmp_path: Path) -> None:
    result = run([{"id": "same", "n": 1}] * 3, tmp_path)
    assert result.items_out == 3


def test_a_source_changed_below_the_watermark_is_refused(tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", ROWS)
    run(hr.read_jsonl(source, key="id"), tmp_path)
    edited = [*ROWS[:3], {"id": "k3-edited", "n": 3}, *ROWS[4:]]
    write_input(source, edited)
    with pytest.raises(hr.ResumeMismatch, match="its first 20 records do not have the keys"):
        run(hr.read_jsonl(source, key="id"), tmp_path, resume=True)
    write_input(source, ROWS[:15])
    with pytest.raises(hr.ResumeMismatch, match="it holds 15 records, but the run in"):
        run(hr.read_jsonl(source, key="id"), tmp_path, resume=True)
    write_input(source, ROWS)  # as it was: resumes (nothing left to do)
    assert run(hr.read_jsonl(source, key="id"), tmp_path, resume=True).items_in == 0


def test_an_async_iterable_is_a_durable_source_that_resumes(tmp_path: Path) -> None:
    async def produce() -> Any:
        for row in ROWS:
            yield row

    first = run(produce(), tmp_path, key="id", ordered=True)
    assert first.items_out == 20
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == [r["id"] for r in ROWS]
    again = run(produce(), tmp_path, key="id", resume=True)
    assert (again.items_in, again.metrics.items_skipped) == (0, 20)
