"""Lets holders of numbered tickets pass one at a time, in ticket order."""

from __future__ import annotations

import asyncio

from .activity import Activity

__all__ = ["Sequencer"]


class Sequencer:
    """Releases tickets 0, 1, 2, ... in order; used for ordered output and ordered steps.

    A holder takes a ticket when it enters, awaits :meth:`wait_turn` when it is ready
    to leave, then calls :meth:`done`. A holder that will never leave (its item
    failed or was filtered) calls :meth:`done` at once and the sequence skips it.
    Waiting holders are parked in the run's :class:`Activity`.
    """

    __slots__ = ("_activity", "_finished_early", "_next_ticket", "_turn", "_waiting")

    def __init__(self, activity: Activity) -> None:
        self._activity = activity
        self._next_ticket = 0
        self._turn = 0
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._finished_early: set[int] = set()

    def ticket(self) -> int:
        """Take the next ticket."""
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    @property
    def waiting(self) -> int:
        """How many holders are waiting for their turn (the reorder buffer's size)."""
        return len(self._waiting)

    async def wait_turn(self, ticket: int) -> None:
        """Return once every earlier ticket is done."""
        if ticket == self._turn:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = future
        self._activity.leave()
        await future

    def done(self, ticket: int) -> None:
        """Mark ``ticket`` as passed (after its turn) or abandoned (at any time)."""
        if ticket != self._turn:
            self._finished_early.add(ticket)
            return
        turn = ticket + 1
        while turn in self._finished_early:
            self._finished_early.remove(turn)
            turn += 1
        self._turn = turn
        future = self._waiting.pop(turn, None)
        if future is not None and not future.done():
            self._activity.enter()
            future.set_result(None)
