"""``headrace status``: a run's progress, read from its store (works while it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..store.session import pipeline_words
from .app import RunStoreOption, app

if TYPE_CHECKING:
    from ..store import RunStatus, RunStore, StoreLocation

__all__ = ["status"]


def _location(run_dir: Path, run_store: str | None) -> StoreLocation:
    """Where the run in ``run_dir`` (or named after it in ``run_store``) is kept, or exit
    with one line when there is none."""
    from ..errors import HeadraceError
    from ..store import StoreLocation

    where = StoreLocation(run_dir, run_store)
    try:
        if where.exists():
            return where
    except (ConnectionError, ValueError, HeadraceError) as exc:  # unreachable, or damaged
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"error: there is no run in {where}", err=True)
    raise typer.Exit(1)


def _open_store(run_dir: Path, run_store: str | None) -> RunStore:
    """The store of the run in ``run_dir`` (or named after it in ``run_store``), or exit."""
    where = _location(run_dir, run_store)
    try:
        return where.open()
    except (ConnectionError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    run_store: RunStoreOption = None,
) -> None:
    """Show a run's progress (works while it runs): done, dead, pending, rate, last errors."""
    import time

    store = _open_store(run_dir, run_store)
    try:
        state = store.status()
        lease = store.lease()
        forced = store.forced_sessions()
        samples = store.samples()
    finally:
        store.close()
    definition = state.definition
    shards: list[Any] = []
    if "shards" in definition:  # a run split across workers: its shards hold the items
        state, shards = _with_shards(state, run_dir, run_store)
    typer.echo(f"run       {run_dir}")
    typer.echo(f"pipeline  {pipeline_words(definition.get('pipeline'))}")
    typer.echo(f"source    {_where(definition.get('source', {}))}")
    typer.echo(f"sink      {_where(definition.get('sink', {}))}")
    typer.echo(
        f"finished  {state.finished:,}: done {state.done:,}, dead {state.dead:,}, "
        f"filtered {state.filtered:,}"
        + (f", repeated keys dropped {state.duplicate:,}" if state.duplicate else "")
    )
    if state.pending is None:
        typer.echo("pending   unknown until the source has been read to its end once")
    else:
        typer.echo(f"pending   {state.pending:,} of {state.total:,}")
    if state.rerun:
        typer.echo(f"rerun     {state.rerun:,} chosen items not finished again (resume finishes)")
    elapsed = max(state.updated - state.created, 1e-9)
    typer.echo(
        f"sessions  {state.sessions} (started {time.ctime(state.created)}, last commit "
        f"{time.ctime(state.updated)}, {state.finished / elapsed:,.1f} items/s overall)"
    )
    if lease is None:
        typer.echo("running   no: no session holds the run")
    elif lease.alive():
        typer.echo(f"running   yes: {lease.describe()}")
    else:
        typer.echo(f"running   no: {lease.describe()} (dead; the next session takes over)")
    if shards:
        _show_shards(shards)
    _show_spend(samples, running=lease is not None and lease.alive())
    if (run_dir / "batches").is_dir():
        _show_batches(run_dir)
    for session, note in forced:
        typer.echo(f"forced    session {session}: {note or 'forced'}")
    for error in state.last_errors:
        typer.echo(
            f"dead in {error.step}: {error.count:,}; last: {error.error_type}: {error.message}"
        )


def _where(description: dict[str, Any]) -> str:
    """A stored source or sink, in a few words."""
    kind = description.get("kind", "?")
    place = description.get("path") or description.get("url") or "(in memory)"
    table = f" table {description['table']}" if "table" in description else ""
    return f"{kind}: {place}{table}"


def _with_shards(state: RunStatus, run_dir: Path, run_store: str | None) -> tuple[RunStatus, Any]:
    """The run's counts as the sum of its shards' (their runs hold the items)."""
    from ..cluster.shard_status import joined_status, shard_states
    from ..cluster.shards import ShardPlan
    from ..errors import HeadraceError
    from ..store import StoreLocation

    location = StoreLocation(run_dir, run_store)
    try:
        plan = ShardPlan.from_json(state.definition.get("shards"), str(location))
    except HeadraceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    shards = shard_states(location, plan)
    merged = joined_status(state, plan, shards)
    return merged, shards


def _show_shards(shards: list[Any]) -> None:
    """One line for the shards, then one for each shard a worker holds now."""
    complete = sum(s.complete for s in shards)
    running = [s for s in shards if s.lease is not None and s.lease.alive()]
    typer.echo(
        f"shards    {len(shards):,}: {complete:,} finished, {len(running):,} running, "
        f"{len(shards) - complete - len(running):,} waiting"
    )
    for shard in running:
        status = shard.status
        rate = status.finished / max(status.updated - status.created, 1e-9) if status else 0.0
        typer.echo(
            f"  shard {shard.index}: items {shard.start:,} to {shard.stop - 1:,}, "
            f"{shard.finished:,} of {shard.stop - shard.start:,} finished, {rate:,.1f} items/s; "
            f"{shard.lease.describe()}"
        )


def _show_spend(samples: list[Any], *, running: bool) -> None:
    """What the run's LLM requests cost so far (every session's), and, while it runs, the
    upper bound held for requests and batches in flight and an auto-tier step's deadline
    (from its time series)."""
    from ..report.series import RunSeries

    series = RunSeries.of(samples)
    latest = series.latest
    spent = series.totals("cost_usd")
    held = latest.number("budget", "committed_usd") if latest is not None and running else 0.0
    if spent or held:
        typer.echo(f"spend     ${spent:,.4f} so far, ${held:,.4f} committed (in flight)")
    for step in latest.steps if latest is not None and running else []:
        left = step.number("llm", "auto", "deadline_left_s")
        if left:  # the auto tier's watchdog: the deadline as it last saw it
            slack = step.number("llm", "auto", "slack_s")
            waiting = step.number("llm", "auto", "in_batches")
            typer.echo(
                f"deadline  {step.name}: {left:,.0f} s left, {waiting:,.0f} requests in "
                f"batches, {slack:,.0f} s before they would be sent online"
            )


def _show_batches(run_dir: Path) -> None:
    """The batch tier's intents by state, and their requests (from the run's ledger)."""
    from ..errors import StorageError
    from ..llm.tier.ledger import STATES, Ledger

    try:
        intents = Ledger(run_dir).intents()
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    states = {state: [i for i in intents if i.state == state] for state in STATES}
    typer.echo(
        f"batches   {len(intents):,}: "
        + ", ".join(f"{state} {len(found):,}" for state, found in states.items() if found)
    )
    waiting = sum(len(i.requests) for i in intents if i.open)
    answered = sum(i.counts.get("completed", 0) for i in states["collected"])
    failed = sum(i.counts.get("failed", 0) for i in states["collected"])
    typer.echo(
        f"requests  {waiting:,} at the provider, {answered:,} answered, {failed:,} failed "
        f"(retried in later batches or dead)"
    )
    for intent in states["submitted"]:
        typer.echo(
            f"  batch {intent.batch_id}: {intent.status or 'submitted'}, "
            f"{len(intent.requests):,} requests, step {intent.step}"
        )
