"""The same promises from both run stores: SQLite in the run directory, and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.errors import StorageError
from headrace.store import RunStore, StoreLocation

DEFINITION = {"pipeline": "p", "source": {"kind": "x"}, "sink": {"kind": "y"}, "options": {}}


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path, run_name: str) -> StoreLocation:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return StoreLocation(tmp_path / run_name, url)


@pytest.fixture
def store(location: StoreLocation) -> Iterator[RunStore]:
    opened = location.open()
    yield opened
    opened.close()


def test_a_new_store_holds_no_run_until_created(location: StoreLocation, store: RunStore) -> None:
    assert not location.exists()
    assert store.definition() is None and store.fingerprint() is None
    store.create(DEFINITION, "f1")
    assert location.exists()
    assert store.definition() == DEFINITION and store.fingerprint() == "f1"
    assert set(store.sink_state()) == {"token"}  # a journaled sink files commits under it


def test_sessions_are_numbered_and_a_forced_one_is_recorded(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    assert store.start_session() == 1
    store.force_fingerprint("f2")
    assert store.start_session(forced=True, note="changed") == 2
    assert store.fingerprint() == "f2"
    assert store.forced_sessions() == [(2, "changed")]
    assert store.status().sessions == 2


def test_commits_record_outcomes_watermark_and_sink_state(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    session = store.start_session()
    store.commit(
        [(0, "a", "done", None), (1, "b", "dead", None), (3, "d", "filtered", None)],
        [(1, "parse", "ValueError", "bad b", 1, json.dumps({"id": "b"}))],
        watermark=2,
        sink_state={"offset": 10},
        session=session,
    )
    store.commit(
        [(2, "c", "dead", None)],
        [(2, "parse", "KeyError", "no c", 3, None)],
        watermark=4,
        sink_state={"offset": 20},
        session=session,
    )
    assert store.watermark() == 4 and store.sink_state() == {"offset": 20}
    assert store.finished_above(2) == {2: "c", 3: "d"}
    assert store.finished_sessions() == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert store.dead_items() == {1: "b", 2: "c"}
    letters = store.dead_letters()
    assert [(d.key, d.step, d.error_type, d.attempts) for d in letters] == [
        ("b", "parse", "ValueError", 1),
        ("c", "parse", "KeyError", 3),
    ]
    assert letters[0].decoded_item() == {"id": "b"}
    store.set_total(5)
    status = store.status()
    assert (status.done, status.dead, status.filtered, status.total, status.pending) == (
        1,
        2,
        1,
        5,
        1,
    )
    [last] = status.last_errors
    assert (last.step, last.count, last.error_type, last.message) == (
        "parse",
        2,
        "KeyError",
        "no c",
    )


def test_a_failed_commit_changes_nothing(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    session = store.start_session()
    store.commit([(0, "a", "done", None)], [], watermark=1, sink_state={"n": 1}, session=session)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.commit(
            [(1, "b", "done", None), (0, "a", "done", None)],  # item 0 is committed already
            [],
            watermark=2,
            sink_state={"n": 2},
            session=session,
        )
    assert (store.watermark(), store.sink_state()) == (1, {"n": 1})
    assert store.finished_above(0) == {0: "a"}


def test_retrying_a_dead_letter_replaces_its_record(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    first = store.start_session()
    store.commit(
        [(0, "a", "dead", None)],
        [(0, "s", "E", "m", 1, None)],
        watermark=1,
        sink_state={},
        session=first,
    )
    retry = store.start_session()
    store.commit(
        [(0, "a", "done", None)], [], watermark=1, sink_state={}, session=retry, replace=True
    )
    assert store.dead_letters() == [] and store.finished_sessions() == {"a": retry}


@hr.step
def double(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "n2": row["n"] * 2}


ROWS = [{"id": f"k{i}", "n": i} for i in range(50)]


def test_a_durable_run_resumes_and_refuses_a_changed_pipeline_with_either_store(
    location: StoreLocation, tmp_path: Path
) -> None:
    options: dict[str, Any] = {
        "key": "id",
        "run_dir": location.run_dir,
        "run_store": location.url,
        "progress": False,
        "sink": hr.write_jsonl(tmp_path / "out.jsonl"),
    }
    first = hr.run(double, ROWS, **options)
    assert first.items_out == 50
    again = hr.run(double, ROWS, resume=True, **options)
    assert (again.items_in, again.metrics.items_skipped) == (0, 50)
    with pytest.raises(hr.ResumeMismatch, match="the pipeline changed since the run in"):
        hr.run(double.with_options(version="2"), ROWS, resume=True, **options)
    store = location.open()
    status = store.status()
    store.close()
    assert (status.done, status.total, status.pending, status.sessions) == (50, 50, 0, 2)


def _tamper(location: StoreLocation, statement: str) -> None:
    """Run ``statement`` on the store's database behind its back; ``{t}`` is the prefix
    of its table names and ``{run}`` selects this run's rows."""
    if location.url is None:
        import sqlite3

        tables = {"runs": "run", "leases": "lease", "dead": "dead"}
        with sqlite3.connect(location.run_dir / "run.sqlite") as db:
            db.execute(statement.format(run="1 = 1", **tables))
        return
    import psycopg

    tables = {"runs": "headrace_runs", "leases": "headrace_leases", "dead": "headrace_dead"}
    with psycopg.connect(location.url, autocommit=True) as connection:
        run = f"run = '{location.name}'"
        connection.execute(statement.format(run=run, **tables).encode())


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("definition", "'{broken'", "run definition"),
        ("definition", "'[1, 2]'", "run definition"),
        ("sink_state", "'not json'", "sink state"),
        ("sink_state", "'\"a string\"'", "sink state"),
    ],
)
def test_a_tampered_run_row_is_named_by_either_store(
    location: StoreLocation, store: RunStore, column: str, value: str, what: str
) -> None:
    """Read back from storage is untrusted: one message naming the store, never a
    traceback from ``json.loads`` (PostgreSQL's store called it unguarded)."""
    store.create(DEFINITION, "f1")
    literal = value.replace("{", "{{")  # a template's brace
    _tamper(location, f"UPDATE {{runs}} SET {column} = {literal} WHERE {{run}}")
    reads = [store.sink_state] if column == "sink_state" else [store.definition, store.status]
    for read in reads:
        with pytest.raises(StorageError, match=rf"the run store .* is damaged: its {what}"):
            read()


def test_a_damaged_dead_letter_item_reads_as_its_text(
    location: StoreLocation, store: RunStore
) -> None:
    store.create(DEFINITION, "f1")
    session = store.start_session()
    store.commit(
        [(0, "a", "dead", None)], [(0, "s", "E", "m", 1, '{"id": "a"}')],
        watermark=1, sink_state={}, session=session,
    )  # fmt: skip
    _tamper(location, "UPDATE {dead} SET item = '{{cut' WHERE {run}")
    assert [d.decoded_item() for d in store.dead_letters()] == ["{cut"]


def test_a_tampered_lease_or_dead_letter_in_sqlite_is_named(tmp_path: Path) -> None:
    """SQLite keeps any value in any column: a lease or a dead letter holding text where
    numbers belong is named, never a ``ValueError`` from deep inside a resume."""
    location = StoreLocation(tmp_path / "run")
    store = location.open()
    store.create(DEFINITION, "f1")
    session = store.start_session()
    store.acquire_lease()
    store.commit(
        [(0, "a", "dead", None)], [(0, "s", "E", "m", 1, None)],
        watermark=1, sink_state={}, session=session,
    )  # fmt: skip
    store.release_lease()
    store.acquire_lease()
    _tamper(location, "UPDATE {leases} SET heartbeat = 'soon' WHERE {run}")
    with pytest.raises(StorageError, match=r"is damaged: its lease is not what a session"):
        store.lease()
    _tamper(location, "UPDATE {dead} SET attempts = 'many' WHERE {run}")
    with pytest.raises(StorageError, match=r"the dead letter of source index 0 is not"):
        store.dead_letters()
    store.close()


def test_outputs_keep_their_positions_and_a_rerun_closes_them_up(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    session = store.start_session()
    assert store.next_output_position() == 0
    rows = [(0, "a", "done", 0), (1, "b", "dead", None), (2, "c", "done", 1), (3, "d", "done", 2)]
    dead = [(1, "s", "E", "m", 1, None)]
    store.commit(rows, dead, watermark=4, sink_state={"n": 3}, session=session)
    assert list(store.output_positions()) == [(0, 0, "a"), (1, 2, "c"), (2, 3, "d")]
    assert store.next_output_position() == 3 and store.unplaced_outputs() == 0

    store.mark_rerun([0, 1], {"n": 2})  # an output and a dead letter chosen
    assert store.rerun_items() == {0: "a", 1: "b"}
    assert list(store.output_positions()) == [(0, 2, "c"), (1, 3, "d")]  # closed up
    assert store.next_output_position() == 2 and store.sink_state() == {"n": 2}
    status = store.status()
    assert (status.done, status.dead, status.rerun) == (2, 0, 2)  # neither until run again
    assert store.dead_letters() == []

    again = store.start_session()
    redone = [(1, "b", "done", 2), (0, "a", "dead", None)]
    store.commit(
        redone, [(0, "s", "E", "m", 1, None)], watermark=4, sink_state={}, session=again,
        replace=True,
    )  # fmt: skip
    assert store.rerun_items() == {}
    assert [key for _, _, key in store.output_positions()] == ["c", "d", "b"]
    assert store.finished_sessions() == {"a": again, "b": again, "c": session, "d": session}


def test_outputs_of_unknown_position_turn_positions_off(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    session = store.start_session()
    store.commit([(0, "a", "done", None)], [], watermark=1, sink_state={}, session=session)
    assert store.unplaced_outputs() == 1 and store.next_output_position() is None


def test_a_rerun_adopts_the_changed_pipeline_reference(store: RunStore) -> None:
    store.create(DEFINITION, "f1")
    store.force_fingerprint("f2", pipeline="recipe:{}")
    assert store.fingerprint() == "f2"
    assert store.definition() == {**DEFINITION, "pipeline": "recipe:{}"}
