"""CPU-bound pure-Python work for the executor benchmark (importable by worker processes)."""

from __future__ import annotations

import os


def burn(x: int, loops: int = 120_000) -> int:
    """About 5 ms of pure-Python arithmetic on this machine kind."""
    total = x
    for i in range(loops):
        total = (total * 31 + i) % 1_000_003
    return total


def burn_and_pid(x: int) -> tuple[int, int]:
    """``burn`` and the pid of the process that ran it."""
    return burn(x), os.getpid()
