"""Which engine code runs a kind of step: a registry of binders, by step type.

A step is a declaration; the engine binds it to a run. An engine module says
which declarations it runs with :func:`binds` (as Ray Data's planner registers
a plan function per logical operator), so a declaration module never imports
the engine: ``step.py`` does not know ``call.py``, nor ``graph.py``
``graph_run.py``. :meth:`~headrace.engine.runtime.RunContext.bind` looks a step's
type up here (its most specific registered base wins) and falls back to the
step's own ``_bind``, which steps outside the core still define.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._types import Handler
    from .engine.runtime import RunContext

__all__ = ["Binder", "binder_for", "binds"]

Binder = Callable[[Any, "RunContext"], "Handler"]
"""Makes a step's handler in one run: ``binder(step, ctx)``."""

_BINDERS: dict[type, Binder] = {}
B = TypeVar("B", bound=Binder)


def binds(kind: type) -> Callable[[B], B]:
    """Register the decorated function as the binder of ``kind`` (and its subclasses)."""

    def register(binder: B) -> B:
        _BINDERS[kind] = binder
        return binder

    return register


def binder_for(step: Any) -> Binder | None:
    """The binder registered for ``step``'s type or its nearest base, if any."""
    for kind in type(step).__mro__:
        binder = _BINDERS.get(kind)
        if binder is not None:
            return binder
    return None
