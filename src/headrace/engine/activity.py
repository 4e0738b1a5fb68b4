"""Counts the units of a run that can still make progress.

A *unit* is a lane carrying an item, a branch of a fan-out, or a batch call in
flight. A unit that waits on another part of the run (an item sitting in a
micro-batcher, an item waiting for its turn to be emitted in order) *leaves*;
whoever wakes it *enters* on its behalf, before its own unit leaves, so the count
never dips to zero in between.

When the count reaches zero nothing can arrive anywhere any more except by a
flush, so the idle hooks (the micro-batchers) flush at once instead of waiting
for their timers: a run never stalls on a timer at its tail.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Activity"]


class Activity:
    """The run-wide count of running units, with hooks called when it reaches zero."""

    __slots__ = ("_idle_hooks", "running")

    def __init__(self) -> None:
        self.running = 0
        self._idle_hooks: list[Callable[[], None]] = []

    def on_idle(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` every time the count of running units drops to zero."""
        self._idle_hooks.append(hook)

    def enter(self, units: int = 1) -> None:
        """``units`` more units are running."""
        self.running += units

    def leave(self) -> None:
        """One unit stopped running (it waits, or it is finished)."""
        self.running -= 1
        if self.running == 0:
            for hook in self._idle_hooks:
                hook()
