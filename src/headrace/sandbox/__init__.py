"""The sandbox that recipe conditions, route selectors and prompt templates run in.

It is Jinja2's immutable sandboxed environment, narrowed further:

- no names but the ones a caller passes in (Jinja's ``range``, ``lipsum``,
  ``cycler``, ``joiner``, ``namespace`` and ``dict`` globals are removed);
- no attribute that starts with ``_`` (``''.__class__``, ``x.__init__.__globals__``);
- no calls at all, methods included: only the filters in :data:`FILTERS` and
  Jinja's tests (``is defined``, ``is number``...) may be applied;
- no ``%`` formatting of strings, and ``*`` and ``**`` refuse results larger than
  :data:`MAX_SIZE` items or :data:`MAX_BITS` bits, so ``'a' * 10**9`` and
  ``9 ** 9 ** 9`` fail at once instead of eating the machine;
- work and size are bounded by counts, never by time, and measured before
  anything is built (:mod:`headrace.sandbox.bounds`): a filter that walks its
  value (``|join``, ``|sum``, ``|tojson``...) refuses one larger than
  :data:`MAX_WORK` items and characters, or a result larger than
  :data:`MAX_OUTPUT` characters (``|join`` with a long separator,
  ``|tojson(indent=...)``), before it starts; ``~``, ``+`` and ``{% set %}``
  blocks refuse text longer than :data:`MAX_OUTPUT`; a template's ``{% for %}``
  loops run at most :data:`MAX_LOOPS` iterations in all, its text is at most
  :data:`MAX_OUTPUT` characters, and everything one rendering walks and builds
  is at most :data:`MAX_TEMPLATE_WORK`;
- undefined names are errors, not silently empty.

An expression that breaks a rule is refused where it is defined when the rule can
be seen in its text (a call, an unknown filter, a syntax error), and otherwise
when it runs, with :class:`ExpressionError` naming the rule.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ExpressionError, PipelineError
from .bounds import (
    MAX_BITS,
    MAX_LOOPS,
    MAX_OUTPUT,
    MAX_SIZE,
    MAX_TEMPLATE_WORK,
    MAX_WORK,
    bounded_add,
    bounded_concat,
    bounded_filter,
    bounded_finalize,
    bounded_join,
    bounded_power,
    bounded_product,
    counted_loop,
    metered,
)

__all__ = [
    "FILTERS",
    "MAX_BITS",
    "MAX_LOOPS",
    "MAX_OUTPUT",
    "MAX_SIZE",
    "MAX_TEMPLATE_WORK",
    "MAX_WORK",
    "Expression",
    "ExpressionError",
    "compile_checked",
    "environment",
    "names_used",
    "render",
]

_WALKING_FILTERS = frozenset(
    {"join", "sum", "string", "tojson", "list", "sort", "unique", "wordcount", "max", "min"}
)
_LOOP_FILTER = "headrace_counted_loop"  # put on every loop by compile_checked

FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "max",
        "min",
        "round",
        "sort",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "truncate",
        "unique",
        "upper",
        "wordcount",
    }
)
"""The filters a recipe expression or template may use."""


def _no_string_formatting(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        raise SecurityError("string formatting with % is not allowed; join text with ~")
    return operator.mod(left, right)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` measured before its text is made."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _RecipeSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    _BINOPS: Mapping[str, Callable[[Any, Any], Any]] = {
        "*": bounded_product,
        "**": bounded_power,
        "%": _no_string_formatting,
        "+": bounded_add,
    }
    bounded_concat = staticmethod(bounded_concat)
    concat = staticmethod(bounded_join)  # a {% set %} block's text

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not attr.startswith("_") and super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return self._BINOPS[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError(
            f"calls are not allowed (tried to call {getattr(__obj, '__name__', 'a value')}); "
            "use a filter such as |lower or |length"
        )


def _make_environment() -> _RecipeSandbox:
    env = _RecipeSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=bounded_finalize,
    )
    env.globals.clear()
    env.filters = {
        name: bounded_filter(name, f) if name in _WALKING_FILTERS else f
        for name, f in env.filters.items()
        if name in FILTERS
    }
    env.filters[_LOOP_FILTER] = counted_loop
    return env


def render(template: Any, names: Mapping[str, Any]) -> str:
    """A template compiled by :func:`compile_checked`, rendered with ``names`` within
    :data:`MAX_LOOPS` loop iterations and :data:`MAX_OUTPUT` characters.

    Raises:
        SecurityError: a bound was reached (a :class:`jinja2.TemplateError`).
    """
    with metered():
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**names):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the text is longer than {MAX_OUTPUT:,} characters")
            parts.append(chunk)
        return "".join(parts)


_ENVIRONMENT = _make_environment()


def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment every expression and template is compiled in."""
    return _ENVIRONMENT


def compile_checked(source: str, *, template: bool) -> Any:
    """``source`` compiled as a template or an expression, once its text is checked.

    Raises:
        PipelineError: it does not parse, calls something, names an attribute that
            starts with ``_``, or uses a filter that is not in :data:`FILTERS` (the
            rules its text shows; the message reads after the source's name).
    """
    env = _ENVIRONMENT
    try:
        if template:
            tree = env.parse(source)
            for loop in tree.find_all(nodes.For):  # every loop counts its iterations
                loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None)
            compiled: Any = env.from_string(tree)
        else:
            compiled = env.compile_expression(source, undefined_to_none=False)
            tree = env.parse("{{ (" + source + ") }}")
    except TemplateError as exc:
        raise PipelineError(f"does not parse: {exc}") from None
    for _ in tree.find_all(nodes.Call):
        raise PipelineError("calls are not allowed; use a filter such as |lower or |length")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        name = getattr(node, "attr", None) or getattr(node, "name", None)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            raise PipelineError(f"names starting with _ are not allowed ({name!r})")
    return compiled


def names_used(source: str) -> set[str]:
    """The names an expression reads (``a.b == c`` reads ``a`` and ``c``).

    Raises:
        PipelineError: it does not parse.
    """
    return set(meta.find_undeclared_variables(_parsed(source)))


def _parsed(source: str) -> nodes.Template:
    """An expression's syntax tree.

    Raises:
        PipelineError: it does not parse.
    """
    try:
        return _ENVIRONMENT.parse("{{ (" + source + ") }}")
    except TemplateError as exc:
        raise PipelineError(f"does not parse: {exc}") from None


def fields_used(source: str) -> list[tuple[str, str]]:
    """The ``name.field`` and ``name["field"]`` an expression reads, in order.

    Raises:
        PipelineError: it does not parse.
    """
    tree = _parsed(source)
    used: list[tuple[str, str]] = []
    for found in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(found, nodes.Getattr) and isinstance(found.node, nodes.Name):
            used.append((found.node.name, found.attr))
        elif (
            isinstance(found, nodes.Getitem)
            and isinstance(found.node, nodes.Name)
            and isinstance(found.arg, nodes.Const)
            and isinstance(found.arg.value, str)
        ):
            used.append((found.node.name, found.arg.value))
    return used


class Expression:
    """A sandboxed expression, compiled once: ``tone.tone == 'combative'``.

    Calling it with a mapping of names evaluates it there.

    Args:
        source: the expression's text.
        where: what it belongs to, for error messages.

    Raises:
        PipelineError: it does not parse, calls something, or names an unknown filter.
    """

    def __init__(self, source: str, *, where: str = "expression") -> None:
        if not isinstance(source, str) or not source.strip():
            raise PipelineError(f"{where}: an expression must be non-empty text, got {source!r}")
        self.source = source
        self.where = where
        try:
            self._compiled = compile_checked(source, template=False)
        except PipelineError as exc:
            raise PipelineError(f"{where}: {source!r} {exc}") from None

    def __getstate__(self) -> dict[str, Any]:
        # compiled code does not unpickle: the text travels and compiles again
        return {"source": self.source, "where": self.where}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], where=state["where"])  # type: ignore[misc]

    def __call__(self, names: Mapping[str, Any]) -> Any:
        """The expression's value with ``names`` defined.

        Raises:
            ExpressionError: a sandbox rule was broken, or a name is undefined.
        """
        try:
            with metered():
                value = self._compiled(**names)
        except (SecurityError, TemplateError) as exc:
            raise ExpressionError(f"{self.where}: {self.source!r}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise ExpressionError(
                f"{self.where}: {self.source!r}: {type(exc).__name__}: {exc}"
            ) from None
        if isinstance(value, StrictUndefined):
            raise ExpressionError(f"{self.where}: {self.source!r} is undefined")
        return value

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"
