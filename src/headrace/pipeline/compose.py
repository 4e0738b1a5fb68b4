"""Composition: steps made of steps.

``a >> b`` runs in sequence, ``a | b`` fans out (both run on the same item, at the
same time), ``merge()`` names a fan-out's results, ``route`` picks one branch per
item, ``map`` runs a step over a list inside an item, ``filter`` drops items.
Each composition is itself a :class:`~headrace.pipeline.step.Step` and nests freely.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import pairwise
from typing import Any, Literal, TypeVar, TypeVarTuple, overload

from ..errors import PipelineError
from ..values.checks import positive_int
from .fingerprint import code_hash
from .step import Step, as_step

__all__ = [
    "Branches",
    "Filter",
    "MapStep",
    "Merge",
    "Parallel",
    "Route",
    "Sequence",
    "filter",
    "map",
    "merge",
    "parallel",
    "route",
]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
Ts = TypeVarTuple("Ts")


class Sequence(Step[In, Out]):
    """Steps run one after another; an item dropped by one goes no further."""

    def __init__(self, *steps: Step[Any, Any], name: str | None = None) -> None:
        flat: list[Step[Any, Any]] = []
        for part in steps:
            part = as_step(part, after=flat[-1].name if flat else None)
            if isinstance(part, Sequence):
                flat.extend(part.steps)
            else:
                flat.append(part)
        for before, after in pairwise(flat):
            if isinstance(after, Merge):
                after.check_follows(before)
        if not flat:
            raise PipelineError("a sequence needs at least one step")
        self.steps: tuple[Step[Any, Any], ...] = tuple(flat)
        self.name = name or " >> ".join(s.name for s in flat)

    def children(self) -> tuple[Step[Any, Any], ...]:
        return self.steps

    def _identity(self) -> dict[str, Any]:
        return {"kind": "sequence", "steps": [s.fingerprint for s in self.steps]}


class Branches(tuple[Any, ...]):
    """The outputs of a fan-out (``a | b``): a tuple that remembers its branches' names."""

    names: tuple[str, ...]

    def __new__(cls, values: Iterable[Any], names: tuple[str, ...]) -> Branches:
        self = super().__new__(cls, values)
        self.names = names
        return self

    def __reduce__(self) -> Any:
        return (Branches, (tuple(self), self.names))


class Parallel(Step[In, tuple[*Ts]]):
    """Branches that all run on the same item at the same time.

    ``a | b`` yields a :class:`Branches` tuple ``(a's output, b's output)``;
    ``parallel(x=a, y=b)`` yields a dict ``{"x": ..., "y": ...}``. If one branch
    fails, the others are cancelled and the item fails; if one branch drops the
    item, the item is dropped.
    """

    def __init__(
        self,
        branches: tuple[Step[Any, Any], ...],
        *,
        keys: tuple[str, ...] | None = None,
        name: str | None = None,
    ) -> None:
        if len(branches) < 2:
            raise PipelineError("a fan-out needs at least two branches")
        self.branches = branches
        self.keys = keys
        self.name = name or "(" + " | ".join(b.name for b in branches) + ")"

    @classmethod
    def of(cls, *steps: Step[Any, Any]) -> Parallel[Any]:
        """Fan out over ``steps``, flattening unnamed fan-outs (``a | b | c`` has 3 branches)."""
        flat: list[Step[Any, Any]] = []
        for part in steps:
            if isinstance(part, Parallel) and part.keys is None:
                flat.extend(part.branches)
            else:
                flat.append(part)
        return Parallel(tuple(flat))

    @overload  # type: ignore[override]
    def __or__(self: Parallel[A, *Ts], other: Step[A, C]) -> Parallel[A, *Ts, C]: ...

    @overload
    def __or__(self: Parallel[A, *Ts], other: Callable[[A], C]) -> Parallel[A, *Ts, C]: ...

    def __or__(self: Parallel[A, *Ts], other: Any) -> Parallel[A, *Ts, Any]:
        """Add a branch: ``a | b | c`` is one fan-out of three."""
        return Parallel.of(self, as_step(other, after=self.name))

    def total_slots(self) -> int:
        # one item occupies a slot in every branch at once
        return max(branch.total_slots() for branch in self.branches)

    @property
    def names(self) -> tuple[str, ...]:
        """The branches' names, or the keys given to :func:`parallel`."""
        return self.keys if self.keys is not None else tuple(b.name for b in self.branches)

    def children(self) -> tuple[Step[Any, Any], ...]:
        return self.branches

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "parallel",
            "keys": self.keys,
            "branches": [b.fingerprint for b in self.branches],
        }


class Merge(Step[tuple[Any, ...], dict[str, Any]]):
    """Turns a fan-out's tuple into a dict keyed by branch name; see :func:`merge`."""

    def __init__(self) -> None:
        self.name = "merge"

    def check_follows(self, before: Step[Any, Any] | None) -> None:
        """Raise unless ``before`` is an unnamed fan-out with distinct branch names."""
        if not isinstance(before, Parallel) or before.keys is not None:
            what = "the start of the pipeline" if before is None else f"step {before.name!r}"
            raise PipelineError(
                f"merge() must directly follow a fan-out (a | b), but it follows {what}"
            )
        names = before.names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PipelineError(
                f"merge() needs distinct branch names, but {before.name} has {duplicates} more "
                "than once; rename one with step.named('...')"
            )

    def _identity(self) -> dict[str, Any]:
        return {"kind": "merge"}


class Route(Step[In, Out]):
    """Sends each item down one branch, chosen by ``selector(item)``; see :func:`route`."""

    def __init__(
        self,
        selector: Callable[[Any], Hashable],
        branches: Mapping[Hashable, Step[Any, Any]],
        default: Step[Any, Any] | None,
        name: str,
    ) -> None:
        self.selector = selector
        self.branches = dict(branches)
        self.default = default
        self.name = name

    def children(self) -> tuple[Step[Any, Any], ...]:
        extra = (self.default,) if self.default is not None else ()
        return (*self.branches.values(), *extra)

    def total_slots(self) -> int:
        # an item takes one branch; enough items for the widest branch fill any of them
        return max(branch.total_slots() for branch in self.children())

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "route",
            "name": self.name,
            "selector": code_hash(self.selector),
            "branches": {repr(k): s.fingerprint for k, s in self.branches.items()},
            "default": self.default.fingerprint if self.default is not None else None,
        }


class MapStep(Step[Iterable[A], list[B]]):
    """Runs a step on every element of a list inside an item; see :func:`map`."""

    def __init__(
        self,
        inner: Step[A, B],
        concurrency: int,
        name: str,
        *,
        on_error: Literal["fail", "skip"] = "fail",
        over: str | None = None,
    ) -> None:
        positive_int(concurrency, "map concurrency")
        if on_error not in ("fail", "skip"):
            raise PipelineError(f"map on_error must be 'fail' or 'skip', got {on_error!r}")
        self.inner = inner
        self.concurrency = concurrency
        self.name = name
        self.on_error = on_error
        self.over = over

    def children(self) -> tuple[Step[Any, Any], ...]:
        return (self.inner,)

    def total_slots(self) -> int:
        # each item brings up to `concurrency` elements into the inner step at once
        return max(1, -(-self.inner.total_slots() // self.concurrency))

    def _identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"kind": "map", "inner": self.inner.fingerprint}
        if self.on_error != "fail" or self.over is not None:  # older fingerprints stay valid
            identity.update(on_error=self.on_error, over=self.over)
        return identity

    def elements(self, value: Any) -> list[Any]:
        """The list the map runs over: the item, or its field ``over``."""
        if self.over is not None:
            if isinstance(value, Mapping):
                if self.over not in value:
                    raise KeyError(f"the item has no field {self.over!r}")
                value = value[self.over]
            else:
                value = getattr(value, self.over)
        if isinstance(value, str | bytes | Mapping):
            raise TypeError(f"a map runs over a list, got {type(value).__name__}")
        return list(value)


class Filter(Step[A, A]):
    """Keeps items for which ``predicate(item)`` is true; see :func:`filter`."""

    def __init__(self, predicate: Callable[[Any], Any], name: str) -> None:
        if not callable(predicate):
            raise PipelineError(f"filter needs a callable predicate, got {predicate!r}")
        self.predicate = predicate
        self.name = name

    def _identity(self) -> dict[str, Any]:
        return {"kind": "filter", "name": self.name, "predicate": code_hash(self.predicate)}


def merge() -> Merge:
    """Turn the tuple of a fan-out into a dict keyed by branch name.

    ``fetch >> (tone | embed) >> hr.merge()`` yields ``{"tone": ..., "embed": ...}``.
    It must directly follow a fan-out whose branches have distinct names (rename
    with ``step.named("...")``), checked where the pipeline is built.
    """
    return Merge()


def parallel(**branches: Step[Any, Any] | Callable[[Any], Any]) -> Step[Any, dict[str, Any]]:
    """Fan out to named branches; the output is a dict keyed by the given names.

    Typed as a step from any item to ``dict[str, Any]``, so that
    ``hr.parallel(a=..., b=...) >> step`` type-checks (the object is a
    :class:`Parallel` with ``keys``).

    Raises:
        PipelineError: fewer than two branches, or a branch that is not a step or callable.
    """
    steps = tuple(as_step(s, after=None) for s in branches.values())
    named: Step[Any, Any] = Parallel(steps, keys=tuple(branches))
    return named


def route(
    selector: Callable[[A], Hashable],
    branches: Mapping[Hashable, Step[A, B] | Callable[[A], B]],
    *,
    default: Step[A, B] | Callable[[A], B] | None = None,
    name: str = "route",
) -> Route[A, B]:
    """Send each item down the branch whose key ``selector(item)`` returns.

    Args:
        selector: a sync function of the item returning a branch key.
        branches: branch key to step (or callable).
        default: the step for keys not in ``branches``; without one, such an item
            fails with :class:`~headrace.errors.NoRoute`.
        name: the router's name in metrics (items per branch are counted).
    """
    if not callable(selector):
        raise PipelineError(f"route needs a callable selector, got {selector!r}")
    if not branches:
        raise PipelineError("route needs at least one branch")
    steps = {key: as_step(s, after=name) for key, s in branches.items()}
    fallback = as_step(default, after=name) if default is not None else None
    return Route(selector, steps, fallback, name)


def map(
    step: Step[A, B] | Callable[[A], B],
    *,
    concurrency: int = 16,
    name: str | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    over: str | None = None,
) -> MapStep[A, B]:
    """Run ``step`` on each element of an item that is a list; the output is the list of results.

    Results keep the elements' order; elements the step drops are left out. If one
    element fails, the item fails (the error names the element's index), unless
    ``on_error="skip"``.

    Args:
        step: the step for one element.
        concurrency: how many elements of one item run at once (the inner step's
            own concurrency limit still applies across all items).
        name: the map's name in metrics (default ``map(<inner name>)``).
        on_error: ``"fail"`` (the item fails with its element) or ``"skip"`` (the
            failed element is left out of the list and counted as ``skipped``).
        over: map over this field of the item (a dict key or an attribute) instead
            of the item itself.
    """
    inner = as_step(step, after=None)
    return MapStep(inner, concurrency, name or f"map({inner.name})", on_error=on_error, over=over)


def filter(predicate: Callable[[A], Any], *, name: str | None = None) -> Filter[A]:
    """Keep items for which ``predicate(item)`` is truthy; drop (and count) the others.

    The predicate may be sync or async. Dropped items end the run as *filtered*.
    """
    label = name or str(getattr(predicate, "__name__", "filter"))
    return Filter(predicate, "filter" if label == "<lambda>" else label)
