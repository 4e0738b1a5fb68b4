"""A rerun: the items whose stored output or dead letter matches a condition, chosen,
taken out of the sink and the run store together, and left for the session to compute
again (``headrace rerun RUN_DIR --where COND``, ``hr.rerun``).

Taking them out is one step a kill cannot split. The sink first writes its output
without them beside the old one (a file sink: the file rewritten under a temporary
name; a part directory: each part that held one, rewritten under a new name); one
run-store transaction then marks them ``rerun``, closes up the remaining outputs'
positions and commits the sink's new state, which names what was written; only then
does the sink put it in place (and a session that finds it not yet in place finishes
that first). A table (a SQL sink) is keyed: its rows of the chosen items are deleted
after the store's transaction, and again by every session while they are unfinished.

Which record of a file is which item's is the run store's record of each output's
position (its place among the sink's records), kept since positions were recorded;
a table's rows carry their keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExpressionError, HeadraceError, StorageError
from ..sandbox import Expression, names_used
from .run_store import RunStore

_log = logging.getLogger("headrace.run")

__all__ = ["Chosen", "choose", "drop_unfinished", "items_to_rerun", "take_out"]

ITEM_NAMES = ("key", "status", "output", "step", "error_type", "message", "attempts")
"""The names a condition sees beside an output's fields (see :func:`choose`)."""


@dataclass(slots=True)
class Chosen:
    """The items a rerun's condition matched: their source indexes and keys, and the
    positions of their outputs among the sink's records."""

    indexes: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    positions: set[int] = field(default_factory=set)


def choose(store: RunStore, sink: Any, where: str) -> Chosen:
    """The items whose output (in ``sink``, already opened) or dead letter (in
    ``store``) matches the sandboxed condition ``where``.

    The condition sees each output's fields by name (a record's), ``output`` (the
    whole value), ``key``, ``status`` (``"done"`` or ``"dead"``), and a dead letter's
    ``step``, ``error_type``, ``message`` and ``attempts``; a name an item lacks is
    ``None`` for it (an output's fields for a dead letter, and the reverse).

    Raises:
        PipelineError: the condition does not parse.
        ExpressionError: it fails on an item (named), or names nothing any item has.
        HeadraceError: the sink's outputs cannot be matched to their items.
    """
    condition = Expression(where, where="--where")
    wanted = names_used(where)
    chosen = Chosen()
    seen: set[str] = set(ITEM_NAMES)
    failed: ExpressionError | None = None  # after a failure, only the names are gathered
    for index, key, position, names in _candidates(store, sink):
        seen.update(names)
        if failed is not None:
            continue
        for name in wanted:
            names.setdefault(name, None)
        try:
            matched = condition(names)
        except ExpressionError as exc:
            failed = ExpressionError(f"{exc} (on the item {key!r})")
            continue
        if matched:
            chosen.indexes.append(index)
            chosen.keys.append(key)
            if position is not None:
                chosen.positions.add(position)
    unknown = sorted(wanted - seen)
    if unknown:  # a misspelt field, which failed as None: say that, not the failure
        fields = ", ".join(sorted(seen - set(ITEM_NAMES))) or "none"
        raise ExpressionError(
            f"--where {where!r} names {', '.join(unknown)}, which no item has (the outputs' "
            f"fields: {fields}; and {', '.join(ITEM_NAMES)})"
        )
    if failed is not None:
        raise failed
    return chosen


def _candidates(
    store: RunStore, sink: Any
) -> Iterator[tuple[int, str, int | None, dict[str, Any]]]:
    """Each item with an output or a dead letter: its index, key, output's position
    (``None`` in a table), and the names its condition sees."""
    for index, key, position, value in _outputs(store, sink):
        names: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
        names.update(key=key, status="done", output=value)
        yield index, key, position, names
    for dead in store.iter_dead_letters():
        yield (
            dead.index,
            dead.key,
            None,
            {
                "key": dead.key,
                "status": "dead",
                "output": None,
                "step": dead.step,
                "error_type": dead.error_type,
                "message": dead.message,
                "attempts": dead.attempts,
            },
        )


def _outputs(store: RunStore, sink: Any) -> Iterator[tuple[int, str, int | None, Any]]:
    """``(index, key, position, output)`` of every item with an output."""
    by_key = getattr(sink, "outputs_by_key", None)
    if by_key is not None:  # a table: its rows name their items
        index_of = {key: index for _, index, key in store.output_positions()}
        for key, record in by_key():
            if key in index_of:
                yield index_of[key], key, None, record
        return
    outputs = getattr(sink, "outputs", None)
    if outputs is None:
        raise HeadraceError(
            f"a {type(sink).__name__} cannot give back what it was handed, so its outputs "
            "cannot be chosen or replaced: rerun needs a file, part-directory or SQL sink"
        )
    unplaced = store.unplaced_outputs()
    if unplaced:
        raise HeadraceError(
            f"{unplaced:,} outputs of this run were written by a headrace from before output "
            "positions were kept, so they cannot be matched to their items: start the run "
            "again (--fresh) to rerun parts of it"
        )
    mismatch = StorageError(
        f"{_described(sink)} does not hold one record for each output the run store "
        "recorded: it was changed since; resume with --rebuild-sink to compute it again"
    )
    places = store.output_positions()
    for number, value in enumerate(outputs()):
        place = next(places, None)
        if place is None or place[0] != number:  # positions run 0, 1, 2, ... in the store
            raise mismatch
        position, index, key = place
        yield index, key, position, value
    if next(places, None) is not None:
        raise mismatch


def _described(sink: Any) -> str:
    described = sink.describe()
    return str(described.get("path") or described.get("table") or "the sink")


def take_out(store: RunStore, sink: Any, chosen: Chosen) -> None:
    """Take the chosen items' outputs out of the sink and mark them ``rerun``, as one
    step a kill cannot split (see the module notes)."""
    if not chosen.indexes:
        return
    rewrite = getattr(sink, "rewrite_without", None)
    state = rewrite(chosen.positions) if rewrite is not None else store.sink_state()
    store.mark_rerun(chosen.indexes, state)
    if rewrite is not None:
        sink.finish_rewrite(state)
    drop_unfinished(store, sink)


def drop_unfinished(store: RunStore, sink: Any) -> dict[int, str]:
    """The items chosen for a rerun that are not finished again (index -> key); a
    table's rows of them are deleted (a kill may have come before they were)."""
    unfinished = store.rerun_items()
    drop = getattr(sink, "drop_keys", None)
    if unfinished and drop is not None:
        drop(sorted(unfinished.values()))
    return unfinished


def items_to_rerun(
    store: RunStore,
    sink: Any,
    mode: str,
    where: str | None,
    location: object,
    adopt: Callable[[], None] = lambda: None,
) -> dict[int, str]:
    """The items a session runs again for a rerun (index -> key): in a ``rerun``
    session, those ``where`` chooses (taken out of the sink now); in any session, those
    an earlier rerun left unfinished, which are finished first (a rerun session then
    chooses nothing: its condition is not applied again to what was rerun).

    ``adopt`` (the rerun's pipeline made the run's) is called once the condition has
    chosen and before anything is taken out: a kill between the two leaves a run whose
    resume loads the new pipeline and finishes nothing more, never chosen items that a
    resume would compute with the old one."""
    unfinished = drop_unfinished(store, sink)
    if unfinished or mode != "rerun" or where is None:
        if unfinished and mode == "rerun":
            adopt()
        if unfinished:
            _log.warning(
                "headrace: finishing the rerun of %s items left unfinished in %s%s",
                f"{len(unfinished):,}",
                location,
                f" (--where {where!r} is not applied: rerun again after)" if where else "",
            )
        return unfinished
    chosen = choose(store, sink, where)
    if chosen.indexes:  # nothing chosen: the run stays as it was, its pipeline too
        adopt()
    take_out(store, sink, chosen)
    _log.warning(
        "headrace: rerun where %s: %s items of %s chosen",
        where,
        f"{len(chosen.indexes):,}",
        location,
    )
    return dict(zip(chosen.indexes, chosen.keys, strict=True))
