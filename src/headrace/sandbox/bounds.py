"""The sandbox's bounds on size and work: measured before anything large is built.

A recipe's expression or template can ask for an enormous value with a few
characters: ``([''] * 100000) | join('x' * 100000)`` is 10 GB of text,
``tojson(indent=100000)`` or ``{{ ['x' * 100000] * 100000 }}`` as much, and a
``{% set %}`` that doubles a string does it in 17 steps. Counting items is not
enough: each bound here measures what an operation *would produce* before it
produces it, and every operation charges what it walked and built to one budget
per rendering (:data:`MAX_TEMPLATE_WORK`), so a million loop iterations that
each sort 100,000 items stop after 500, not after 42 hours.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2.exceptions import SecurityError

__all__ = [
    "MAX_BITS",
    "MAX_LOOPS",
    "MAX_OUTPUT",
    "MAX_SIZE",
    "MAX_TEMPLATE_WORK",
    "MAX_WORK",
    "bounded_add",
    "bounded_concat",
    "bounded_filter",
    "bounded_finalize",
    "bounded_join",
    "bounded_power",
    "bounded_product",
    "counted_loop",
    "metered",
    "size_within",
]

MAX_SIZE = 100_000
"""The longest list ``*`` or ``+`` may build (and a string built by ``*``)."""

MAX_BITS = 4_096
"""The largest integer ``**`` or ``*`` may build, in bits."""

MAX_WORK = 10_000_000
"""The most items and characters a walking filter (``|join``, ``|sum``...) may take."""

MAX_LOOPS = 1_000_000
"""The most ``{% for %}`` iterations one rendering of a template may run, nested or not."""

MAX_OUTPUT = 10_000_000
"""The longest text one rendering may produce or build, in characters: the template's
output, a string made by ``~``, ``+`` or a ``{% set %}`` block, a filter's result."""

MAX_TEMPLATE_WORK = 50_000_000
"""The most items and characters one rendering or evaluation may walk and build, all
its operations together (a few seconds of work at most)."""

_LOOPS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("loops", default=None)
_WORK: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("work", default=None)


@contextlib.contextmanager
def metered() -> Iterator[None]:
    """Count loop iterations and work from zero for one rendering or evaluation."""
    loops, work = _LOOPS.set([0]), _WORK.set([0])
    try:
        yield
    finally:
        _LOOPS.reset(loops)
        _WORK.reset(work)


def charge(amount: int) -> None:
    """Add ``amount`` items and characters to this rendering's work.

    Raises:
        SecurityError: the work passed :data:`MAX_TEMPLATE_WORK`.
    """
    counter = _WORK.get()
    if counter is None:
        return  # compiling (constant folding): each operation's own bound still holds
    counter[0] += amount
    if counter[0] > MAX_TEMPLATE_WORK:
        raise SecurityError(
            f"the expression or template did more than {MAX_TEMPLATE_WORK:,} items and "
            "characters of work"
        )


_CONTAINERS = (list, tuple, set, frozenset, Mapping)
_PLAIN_CONTAINERS = frozenset({list, tuple, set, frozenset, dict})
_PLAIN_LEAVES = frozenset({int, float, bool, str, bytes, type(None)})


def _is_container(item: Any) -> bool:
    # the exact types first: isinstance against Mapping (an ABC) costs a microsecond
    kind = type(item)
    if kind in _PLAIN_CONTAINERS:
        return True
    if kind in _PLAIN_LEAVES:
        return False
    return isinstance(item, _CONTAINERS)


def _children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [*value.keys(), *value.values()]
    return list(value)


def _leaf(item: Any) -> int:
    return len(item) + 1 if isinstance(item, str | bytes) else 1


def measure(value: Any, budget: int) -> int:
    """How many items and characters ``value`` holds, nested ones counted as often as
    they appear (``[big] * 1000`` counts ``big`` 1,000 times); ``budget + 1`` as soon
    as it is more than ``budget``.

    Each distinct container is walked once (its size is remembered), so a value
    built of one list repeated costs the walk of that list, not of the repeats.
    """
    if not _is_container(value):
        return min(_leaf(value), budget + 1)
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, combine = stack.pop()
        key = id(item)
        if key in sizes:
            continue
        children = _children(item)
        if not combine:
            stack.append((item, True))
            stack.extend((c, False) for c in children if _is_container(c))
            continue
        total = 1
        for child in children:
            kind = type(child)
            if kind is int or kind is float or kind is bool or child is None:
                total += 1
            elif kind is str or kind is bytes:
                total += len(child) + 1
            elif _is_container(child):
                total += sizes.get(id(child), budget + 1)
            else:
                total += 1
            if total > budget:
                return budget + 1
        sizes[key] = total
    return min(sizes[id(value)], budget + 1)


def size_within(value: Any, budget: int) -> bool:
    """Whether ``value`` holds at most ``budget`` items and characters (see :func:`measure`)."""
    return measure(value, budget) <= budget


def _json_size(value: Any, indent: int, budget: int) -> int:
    """About how many characters ``json.dumps(value, indent=indent)`` writes (each
    nested item on a line of its own, indented by its depth); ``budget + 1`` past it."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        container = _is_container(item)
        total += 2 if container else _leaf(item)
        if container:
            children = _children(item)
            total += len(children) * (indent * (depth + 1) + 2)
            stack.extend((child, depth + 1) for child in children)
        if total > budget:
            return budget + 1
    return total


def _output_size(name: str, given: list[Any], kwargs: Mapping[str, Any], walked: int) -> int:
    """What the walking filter ``name`` would produce, in characters, before it runs."""
    if name == "join" and given:
        separator = given[1] if len(given) > 1 else kwargs.get("d", "")
        count = len(given[0]) if hasattr(given[0], "__len__") else 0
        return walked + len(str(separator)) * max(count - 1, 0)
    if name == "tojson" and given:
        indent = given[1] if len(given) > 1 else kwargs.get("indent")
        if isinstance(indent, int) and not isinstance(indent, bool) and indent > 0:
            return _json_size(given[0], indent, MAX_OUTPUT)
    return walked


def bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` refusing, before it runs, a value to walk larger than :data:`MAX_WORK` or a
    result larger than :data:`MAX_OUTPUT`, and charging what it walks."""
    # Jinja passes the environment or context first to a filter marked so
    passed = getattr(fn, "jinja_pass_arg", None)
    at = 1 if passed is not None else 0

    def bounded(*args: Any, **kwargs: Any) -> Any:
        given = list(args[at:])
        walked = measure([*given, *kwargs.values()], MAX_WORK)
        if walked > MAX_WORK:
            raise SecurityError(f"|{name} of more than {MAX_WORK:,} items and characters")
        produced = _output_size(name, given, kwargs, walked)
        if produced > MAX_OUTPUT:
            raise SecurityError(
                f"|{name} would make more than {MAX_OUTPUT:,} characters (about {produced:,})"
            )
        charge(walked)
        return fn(*args, **kwargs)

    if passed is not None:
        bounded.jinja_pass_arg = passed  # type: ignore[attr-defined]
    return bounded


def bounded_power(left: Any, right: Any) -> Any:
    """``left ** right``, refusing an integer of more than :data:`MAX_BITS` bits."""
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and right * math.log2(abs(left)) > MAX_BITS
    ):
        raise SecurityError(f"{left} ** {right} is larger than {MAX_BITS} bits")
    return operator.pow(left, right)


def bounded_product(left: Any, right: Any) -> Any:
    """``left * right``, refusing a repeat of more than :data:`MAX_SIZE` items or an
    integer of more than :data:`MAX_BITS` bits."""
    for seq, times in ((left, right), (right, left)):
        size = len(seq) * times if isinstance(seq, str | list | tuple) else 0
        if isinstance(times, int) and size > MAX_SIZE:
            raise SecurityError(f"a repeat of {size:,} items (at most {MAX_SIZE:,})")
        if isinstance(times, int) and size > 0:
            charge(size)
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_BITS
    ):
        raise SecurityError(f"a product larger than {MAX_BITS} bits")
    return operator.mul(left, right)


def bounded_add(left: Any, right: Any) -> Any:
    """``left + right``, refusing a string longer than :data:`MAX_OUTPUT` or a list
    longer than :data:`MAX_SIZE` (so that doubling stops), and charging its size."""
    if isinstance(left, str) and isinstance(right, str):
        limit = MAX_OUTPUT
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        limit = MAX_SIZE
    else:
        return operator.add(left, right)
    size = len(left) + len(right)
    if size > limit:
        raise SecurityError(f"a + of {size:,} items or characters (at most {limit:,})")
    charge(size)
    return operator.add(left, right)


def bounded_concat(parts: Iterable[Any]) -> str:
    """``a ~ b ~ ...``: each part as text, refusing, before it is made, text longer than
    :data:`MAX_OUTPUT` (a list's text is measured before it is written out)."""
    texts: list[str] = []
    total = 0
    for part in parts:
        if not isinstance(part, str) and measure(part, MAX_OUTPUT - total) > MAX_OUTPUT - total:
            raise SecurityError(f"a ~ of more than {MAX_OUTPUT:,} characters")
        text = str(part)
        total += len(text)
        if total > MAX_OUTPUT:
            raise SecurityError(f"a ~ of more than {MAX_OUTPUT:,} characters")
        texts.append(text)
    charge(total)
    return "".join(texts)


def bounded_join(chunks: Iterable[str]) -> str:
    """A ``{% set %}`` block's text, refusing one longer than :data:`MAX_OUTPUT`."""
    texts: list[str] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_OUTPUT:
            raise SecurityError(f"a {{% set %}} block of more than {MAX_OUTPUT:,} characters")
        texts.append(chunk)
    charge(total)
    return "".join(texts)


def bounded_finalize(value: Any) -> Any:
    """What a ``{{ }}`` writes, measured before it becomes text."""
    if _is_container(value) and not size_within(value, MAX_OUTPUT):
        raise SecurityError(f"a value of more than {MAX_OUTPUT:,} items and characters to write")
    return value


def counted_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """A ``{% for %}``'s items, counted against :data:`MAX_LOOPS` for the rendering."""
    counter = _LOOPS.get()
    if counter is None:
        raise SecurityError("a template with loops is rendered only through sandbox.render")
    for item in iterable:
        counter[0] += 1
        if counter[0] > MAX_LOOPS:
            raise SecurityError(f"loops ran more than {MAX_LOOPS:,} times")
        yield item
