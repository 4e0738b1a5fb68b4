"""The series of a run on a cluster joined from its shards' (constructed rows; the
whole path through Ray is in tests/cluster/test_ray_observe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import headrace as hr
from headrace.cluster.driver import Driver
from headrace.cluster.shards import ShardPlan, shard_location
from headrace.engine.run_options import RunOptions
from headrace.metrics import Histogram
from headrace.metrics.run_data import RunView
from headrace.metrics.timeline import MAX_ROWS
from headrace.report.shards import join_shard_samples
from headrace.store import StoreLocation
from headrace.store.run_store import Sample


def row(session: int, seq: int, t: float, wall_s: float, out: int, **step: Any) -> Sample:
    latency = Histogram()
    for _ in range(out):
        latency.record(0.01)
    data = {
        "items": {"in": out, "out": out},
        "wall_s": wall_s,
        "in_flight": step.pop("in_flight", 0),
        "steps": [{"name": "tone", "calls": out, "latency_hist": latency.sparse(), **step}],
    }
    return Sample(session, seq, t, data)


def at(samples: list[Sample], t: float) -> RunView:
    (found,) = [s for s in samples if s.t == t]
    return RunView(found.data)


def test_counters_add_up_and_a_finished_shard_keeps_its_counts() -> None:
    first = [row(1, 1, 102.0, 2.0, 10, in_flight=4), row(1, 2, 104.0, 4.0, 30, in_flight=0)]
    second = [row(1, 1, 105.0, 2.0, 20, in_flight=3), row(1, 2, 107.0, 4.0, 50, in_flight=2)]
    joined = join_shard_samples([first, second], total=200)
    assert [s.t for s in joined] == [102.0, 104.0, 105.0, 107.0]
    assert {s.session for s in joined} == {1}
    assert at(joined, 102.0).number("items", "out") == 10  # the second has not begun
    assert at(joined, 105.0).number("items", "out") == 30 + 20
    last = at(joined, 107.0)
    assert last.number("items", "out") == 80
    assert last.steps[0].number("calls") == 80
    assert Histogram.from_sparse(last.steps[0].data["latency_hist"]).count == 80
    assert last.steps[0].number("latency_ms", "p50") > 0
    assert last.number("in_flight") == 2  # the first had ended: its last state is gone
    assert at(joined, 102.0).number("in_flight") == 4
    assert last.number("total") == 200
    assert last.wall_s == 107.0 - 100.0  # from the first shard's start


def test_a_shards_sessions_each_count_from_their_start() -> None:
    shard = [row(1, 1, 101.0, 1.0, 5), row(2, 1, 111.0, 1.0, 7)]  # killed, then resumed
    joined = join_shard_samples([shard], total=None)
    assert joined[-1].data["items"]["out"] == 12


def test_a_shared_limit_is_the_highest_in_force_not_the_sum() -> None:
    rate = {"requests_per_minute": 600.0, "source": "429s"}
    first = [row(1, 1, 101.0, 1.0, 5, rate=dict(rate))]
    second = [row(1, 1, 101.0, 1.0, 5, rate={**rate, "requests_per_minute": 540.0})]
    (joined,) = join_shard_samples([first, second], total=None)
    step = RunView(joined.data).steps[0]
    assert step.number("rate", "requests_per_minute") == 600.0
    assert step.data["rate"]["source"] == "429s"


def test_a_long_run_of_many_shards_keeps_at_most_max_rows() -> None:
    shards = [
        [row(1, i, 1000.0 + s * 50 + i, float(i), i) for i in range(1, 60)] for s in range(40)
    ]
    joined = join_shard_samples(shards, total=None)
    assert len(joined) == MAX_ROWS
    assert joined[-1].t == max(s.t for shard in shards for s in shard)
    assert joined[-1].data["items"]["out"] == 59 * 40


def test_tampered_rows_count_as_absent() -> None:
    good = [row(1, 1, 101.0, 1.0, 5)]
    bad = [Sample(1, 1, 101.5, {"items": {"out": "lots"}, "steps": [{"name": 3}, "x"]})]
    rubbish = [Sample(1, 1, 102.0, "not a row")]  # type: ignore[arg-type]
    joined = join_shard_samples([bad, good, rubbish], total=None)
    assert joined[-1].data["items"]["out"] == 5
    assert [s.data["name"] for s in RunView(joined[-1].data).steps] == ["tone"]


def test_a_busy_share_is_of_the_slot_seconds_each_shard_had() -> None:
    # two shards, each with 2 slots working all of its 4 s; the first ended at 104,
    # the second at 107: 7 s of the run with 2 slots at the end is not what they had
    first = [row(1, 1, 104.0, 4.0, 10, slots=2, busy_s=8.0)]
    second = [row(1, 1, 107.0, 4.0, 10, slots=2, busy_s=8.0)]
    last = join_shard_samples([first, second], total=None)[-1]
    step = RunView(last.data).steps[0]
    assert step.number("busy_s") == 16.0 and step.number("slots") == 2  # running only
    assert step.number("slot_s") == 16.0
    assert step.utilisation(RunView(last.data).wall_s) == 1.0  # was 16 / (7 * 2) = 114%


def open_circuit() -> dict[str, Any]:
    return {
        "state": "open",
        "down_s": 12.0,
        "max_outage_s": 300.0,
        "last_error": "ClientConnectorError: refused",
    }


def test_the_ray_progress_line_names_an_outage_a_running_shard_has(
    tmp_path: Path, postgres_url: str
) -> None:
    for url in (None, postgres_url):
        parent = StoreLocation(tmp_path / f"run-{url is None}", url)
        plan = ShardPlan.split(20, 10)
        driver = Driver(hr.Ray(workers=2), b"", [], None, RunOptions(), parent, plan)
        for index in range(2):
            store = shard_location(parent, index).open()
            try:
                store.discard()
                store.create({"pipeline": "t"}, "f")
                store.start_session()
                circuit = open_circuit() if index == 1 else {"state": "closed"}
                store.record_sample(1, 1, 1.0, {"steps": [{"name": "tone", "circuit": circuit}]})
                if index == 0:
                    store.record_sample(1, 2, 2.0, {"steps": [{"name": "tone"}]})
                latest = store.latest_sample()
                assert latest is not None and latest.seq == (2 if index == 0 else 1)
            finally:
                store.close()
        driver.progress_of([0, 1])
        note = driver.counts().note
        assert "provider of step 'tone' down for 12 s (circuit open)" in note
        assert "ClientConnectorError" in note
