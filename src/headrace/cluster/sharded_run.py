"""A run on a cluster, start to end: its source split into shards once (the split stored
with the run, so that a resume splits it the same way), a session of the whole run
around the :class:`~headrace.cluster.driver.Driver` that hands the shards to workers,
and the shards' outputs joined into the sink at the end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..engine.plan import RunPlan, durable_session
from ..engine.result import RunResult
from ..errors import PipelineError, ResumeMismatch
from ..io.records import AsyncKeyedSource
from ..store.dead_file import write_dead_file
from .driver import Driver, Workers
from .shard_status import shard_states
from .sharded_sink import ShardedSink, sharded
from .shards import ShardPlan
from .shipping import check_placement, shippable

__all__ = ["run_sharded"]


async def run_sharded(backend: Workers, plan: RunPlan) -> RunResult:
    """Carry out ``plan`` on the workers ``backend`` names (see
    :class:`~headrace.cluster.backend.Ray`): its source split into shards, each run
    by a worker as a durable run of its own."""
    started = time.perf_counter()
    root, source, sink, options = plan.root, plan.source, plan.sink, plan.options
    assert source is not None and sink is not None and plan.definition is not None
    if not sharded(sink):
        raise PipelineError(
            f"a {type(sink).__name__} cannot be split across workers: give write_jsonl, "
            "write_csv, write_batches, write_parquet or write_sql"
        )
    if isinstance(source, AsyncKeyedSource):
        raise PipelineError(
            "an async iterable cannot be split across workers: write it to a file first, "
            "or pass a list"
        )
    total = source.positions()
    if total is None:
        raise PipelineError(
            "a run on a cluster splits its source by position, so its size must be known: "
            "read a file (hr.read_jsonl, ...) or pass a list, not a generator"
        )
    check_placement(root, backend.num_gpus)
    blob = shippable(root)
    run_dir = Path(str(options.durability.run_dir))
    planned = ShardPlan.split(total, backend.shard_size_for(total))
    definition = {**plan.definition, "shards": planned.to_json()}
    session = durable_session(root, options, ShardedSink(sink), definition)
    session.open(total=total)
    store = session.store
    assert store is not None and session.location is not None
    parent = session.location
    ended = False
    try:
        shards = ShardPlan.from_json((store.definition() or {}).get("shards"), str(parent))
        if shards.total != total:
            raise ResumeMismatch(
                f"the source changed: it holds {total:,} records, but the run in {parent} "
                f"was split over {shards.total:,}"
            )
        if not session.resumed:
            store.commit([], [], watermark=0, sink_state={"sharded": True}, session=session.session)
        driver = Driver(backend, blob, source, sink, options, parent, shards)
        result = await driver.run(session.mode, store.heartbeat)
        states = shard_states(parent, shards)
        clean = all(s.complete for s in states) and not any(s.dead for s in states)
        _join(sink, store, session.session, len(shards.bounds), clean)
        ended = True
    finally:
        session.close(aborted=not ended)
    write_dead_file(driver.dead_letter_rows(), run_dir / "dead.jsonl")
    result.metrics.wall_s = time.perf_counter() - started
    return result


def _join(sink: Any, store: Any, session: Any, count: int, clean: bool) -> None:
    """Join the shards' output into the sink. A file joined when every shard has
    finished with no dead letter left (``clean``: no later session, resume or
    retry-dead, will write its shards again) is committed as ``joined`` with its size
    and CRC, and its shard files (``out.jsonl.shards/``) are removed: a later session
    checks the file instead of joining again."""
    state = store.sink_state()
    if state.get("joined"):
        sink.clear_shards()  # a kill may have come between the commit and the removal
        return
    joined = sink.join_shards(count)
    if not joined or not clean:
        return
    state = {"sharded": True, "joined": True, **joined}
    store.commit([], [], watermark=store.watermark(), sink_state=state, session=session)
    sink.clear_shards()
