"""One session per run: a lease held in the run store, kept alive by a heartbeat.

A session takes the lease before it opens the sink and gives it back when it
ends. While it runs it beats (every commit, and every :data:`BEAT_S` seconds
while idle); a lease whose last beat is older than :data:`STALE_S` belongs to a
session that died (SIGKILL, a lost machine) and the next session takes it over.
A lease's age is judged on the store's clock (PostgreSQL's ``clock_timestamp()``;
a SQLite store's host), never the reader's, so hosts whose clocks disagree agree
on it. A holder whose process is gone is dead at once, but only when it is
provably on this very machine and in this pid namespace (the same boot id and
namespace, not merely the same host name: containers share names and pids).
Every commit checks, in its own transaction, that the lease is still this
session's, so a session that was only frozen (not dead) and lost its lease
stops instead of writing over its successor: the lease is also a fence.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import LeaseLost, RunBusy

__all__ = [
    "BEAT_S",
    "machine_id",
    "STALE_S",
    "Lease",
    "check_free",
    "check_held",
    "end_holder",
    "new_holder",
    "start_holder",
]

BEAT_S = 5.0
"""How often an idle session renews its lease."""

STALE_S = 30.0
"""A lease not renewed for this long is taken to belong to a dead session."""

_LIVE: set[str] = set()  # holders of sessions still open in this process


def _read_machine_id() -> str:
    """This kernel's boot id and this process's pid namespace, or ``""`` if unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"


_MACHINE = _read_machine_id()


def machine_id() -> str:
    """Which pids this process can see: its kernel's boot id and its pid namespace
    (``""`` where the system does not say: then a holder's pid is never judged)."""
    return _MACHINE


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a run: a session of a process on a host, and when it last beat.

    ``machine`` is the holder's :func:`machine_id`; ``read_at`` is the store's clock
    when the lease was read (its age is judged on that clock, not this host's).
    """

    holder: str
    session: int
    host: str
    pid: int
    acquired: float
    heartbeat: float
    machine: str = ""
    read_at: float | None = None

    def alive(self, now: float | None = None) -> bool:
        """Whether the holder is taken as running: it beat within :data:`STALE_S` (on the
        store's clock), and, when it provably runs on this machine and pid namespace,
        its process still exists (a killed session's lease is free at once)."""
        if (self._now(now) - self.heartbeat) >= STALE_S:
            return False
        if not self.machine or self.machine != machine_id():
            return True  # another machine, namespace or an unknown one: only the beat tells
        if self.pid == os.getpid():  # this process: alive while that session is open
            return self.holder in _LIVE
        return _process_exists(self.pid)

    def _now(self, now: float | None) -> float:
        if now is not None:
            return now
        return time.time() if self.read_at is None else self.read_at

    def describe(self, now: float | None = None) -> str:
        """``session 3 (pid 412 on host-a) since 10:02:11, last heartbeat 2 s ago``."""
        now = self._now(now)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired))
        return (
            f"session {self.session} (pid {self.pid} on {self.host}) since {since}, "
            f"last heartbeat {max(now - self.heartbeat, 0):.0f} s ago"
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def new_holder() -> tuple[str, str, int, str]:
    """A fresh holder id for this session, with the host, pid and machine it names."""
    return uuid.uuid4().hex, socket.gethostname(), os.getpid(), machine_id()


def start_holder(holder: str) -> None:
    """The session of ``holder`` took its lease and is open in this process."""
    _LIVE.add(holder)


def end_holder(holder: str) -> None:
    """The session of ``holder`` ended in this process (its lease given back or not)."""
    _LIVE.discard(holder)


def check_free(current: Lease | None, holder: str, where: str, now: float) -> None:
    """Refuse to take a lease that a live session holds.

    Raises:
        RunBusy: ``current`` is another holder's and still beating.
    """
    if current is not None and current.holder != holder and current.alive(now):
        raise RunBusy(
            f"the run in {where} is running in another session: {current.describe(now)}; "
            f"wait for it to end, or stop it (a lease whose heartbeat stops for "
            f"{STALE_S:.0f} s is taken over)"
        )


def check_held(current_holder: str | None, holder: str | None, where: str) -> None:
    """Refuse a commit by a session whose lease was taken over.

    Raises:
        LeaseLost: the lease names another holder (or none).
    """
    if holder is not None and current_holder != holder:
        raise LeaseLost(
            f"this session's lease on the run in {where} was taken over by another session "
            "(its heartbeat had stopped); this session stops without writing more"
        )
