"""Errors of a recipe, a graph and the expressions in them."""

from __future__ import annotations

from collections.abc import Iterable

from .._types import Problem
from .running import HeadraceError, PipelineError

__all__ = ["ExpressionError", "GraphError", "RecipeError"]


class RecipeError(HeadraceError, ValueError):
    """A recipe that cannot run; ``problems`` lists every error found, each with its place."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.place.file, p.place.line, p.place.column, p.message)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class GraphError(PipelineError):
    """A graph that cannot run: names the node or the edge (its position in ``edges``)."""

    def __init__(self, message: str, *, node: str | None = None, edge: int | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.edge = edge


class ExpressionError(HeadraceError, ValueError):
    """An expression broke a sandbox rule, or failed on the values it was given."""
