"""Module-level functions for process-executor tests (workers import them by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import headrace as hr


def cube(x: int) -> int:
    return x**3


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


class Unpicklable(Exception):
    def __init__(self, handle: object) -> None:
        super().__init__("holds a lock")
        self.handle = handle

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("cannot pickle this error")


def raise_unpicklable(x: int) -> int:
    raise Unpicklable(object())


def hang_on_two(x: int) -> int:
    if x == 2:
        time.sleep(60)
    return x


def worker_pid(x: int) -> int:
    return os.getpid()


@hr.step(executor="process", concurrency=2)
def decorated_square(x: int) -> int:
    return x * x


def sum_batch(xs: list[int]) -> list[int]:
    return [x + 100 for x in xs]


def record_pid_then_spin(x: int) -> int:
    marker = Path(os.environ["HEADRACE_PID_DIR"]) / str(os.getpid())
    marker.touch()
    deadline = time.time() + 0.2
    while time.time() < deadline:
        pass
    return x


def die_on_5_and_23(x: int) -> int:
    if x in (5, 23):
        os.kill(os.getpid(), 9)
    return x


def control_on_some(x: int) -> int:
    """SystemExit for x % 4 == 1, StopIteration (as real code meets it) for x % 4 == 2."""
    if x % 4 == 1:
        raise SystemExit(3)
    if x % 4 == 2:
        next(iter([]))
    return x * 10


def batch_exits_on_five(xs: list[int]) -> list[int]:
    """A batched function that raises KeyboardInterrupt for a batch holding 5."""
    if 5 in xs:
        raise KeyboardInterrupt
    return [x * 10 for x in xs]
