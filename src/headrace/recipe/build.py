"""From a recipe file to a pipeline: validate, resolve, and build the same steps Python would.

Each node becomes the step its Python front end builds (``hr.step``,
``hr.llm.transduce``, ``hr.models.embed``, ``hr.map``...), with the node's id as
the step's name and its policies as the same policy objects; the nodes and
edges become an :func:`~headrace.pipeline.graph.graph`, or a plain ``a >> b >> c`` when
the recipe is a straight line without conditions. So a recipe and the same
pipeline written in Python have the same fingerprint, and share caches and runs.

Every problem found is collected with its ``file:line:column`` and field path,
and raised together as one :class:`~headrace.recipe.document.RecipeError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..loading.imports import import_path
from ..pipeline.graph import OTHERWISE, RESERVED, Edge, Graph, GraphError, Node
from ..pipeline.step import Step
from ..sandbox import Expression, fields_used
from .document import Document, Problem, RecipeError, nearest
from .fields import declared_fields
from .nodes import Loc, NodeBuilder
from .reading import read_spec
from .schema import ModelAlias, NodeSpec, RecipeSpec

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["Built", "build"]


@dataclass
class Built:
    """What a recipe file builds to."""

    spec: RecipeSpec
    document: Document
    pipeline: Step[Any, Any]
    graph: Graph
    aliases: dict[str, ModelAlias]
    clients: dict[str, Client] = field(default_factory=dict)


class _Builder(NodeBuilder):
    """Builds one recipe file's steps and their graph, collecting its problems."""

    def recipe_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        assert spec.recipe is not None
        target = self.path(spec.recipe)
        if not target.is_file():
            self.problems.append(
                self.doc.problem((*loc, "recipe"), f"there is no recipe file {spec.recipe!r}")
            )
            return None
        if target in self.chain:
            cycle = " -> ".join(p.name for p in (*self.chain, target))
            self.problems.append(
                self.doc.problem((*loc, "recipe"), f"the recipes include each other: {cycle}")
            )
            return None
        built = self.attempt(
            (*loc, "recipe"), lambda: build(target, allow=self.allow, chain=self.chain)
        )
        return None if built is None else built.pipeline.named(name)

    # -- the graph ---------------------------------------------------------------------

    def graph(self) -> tuple[Graph | None, bool]:
        """The recipe's graph, and whether it is a plain line of steps."""
        spec = self.spec
        nodes: dict[str, Node] = {}
        edges: list[Edge] = []
        origin: list[Loc] = []
        seen: dict[str, int] = {}
        conditional = False
        conditions: list[tuple[Loc, str]] = []
        for index, node_spec in enumerate(spec.nodes):
            loc: Loc = ("nodes", index)
            node_id = node_spec.id
            if node_id is None:
                self.problems.append(self.doc.problem((*loc, "id"), "id is required"))
                continue
            if node_id in seen:
                self.problems.append(
                    self.doc.problem(
                        (*loc, "id"),
                        f"node id {node_id!r} is used twice (first at nodes[{seen[node_id]}])",
                    )
                )
                continue
            if node_id in RESERVED:
                self.problems.append(
                    self.doc.problem(
                        (*loc, "id"),
                        f"{node_id!r} is a name expressions use ({', '.join(sorted(RESERVED))}); "
                        "pick another id",
                    )
                )
                continue
            seen[node_id] = index
            built = self.graph_node(node_spec, node_id, loc)
            if built is not None:
                nodes[node_id] = built
                conditional |= built.step is None or built.input == "context"
            if node_spec.route is not None:
                route = node_spec.route
                targets = [(key, target) for key, target in route.to.items()]
                if route.default is not None:
                    targets.append((OTHERWISE, route.default))
                for key, target in targets:
                    edges.append(Edge(node_id, target, branch=key))
                    where = ("default",) if key is OTHERWISE else ("to", str(key))
                    origin.append((*loc, "route", *where))
        routers = {n.id for n in spec.nodes if n.route is not None}
        if spec.edges is None:
            if routers:
                self.problems.append(
                    self.doc.problem(
                        ("nodes",), "a recipe with a route node lists its edges: add edges:"
                    )
                )
            ids = [n.id for n in spec.nodes if n.id is not None]
            for source, target in pairwise(ids):
                edges.append(Edge(source, target))
                origin.append(("nodes", seen.get(target, 0)))
        else:
            for index, edge_spec in enumerate(spec.edges):
                loc = ("edges", index)
                when = None
                if edge_spec.when is not None:
                    conditional = True
                    text = edge_spec.when
                    when = self.attempt(
                        (*loc, "when"), partial(Expression, text, where="the condition")
                    )
                    if when is None:
                        continue
                    conditions.append(((*loc, "when"), text))
                for source, target in edge_spec.pairs():
                    if source in routers:
                        self.problems.append(
                            self.doc.problem(
                                loc, f"edges from route node {source!r} come from its route.to:"
                            )
                        )
                        continue
                    edges.append(Edge(source, target, when=when))
                    origin.append(loc)
        self.check_fields(nodes, edges, conditions, seen)
        if self.problems:
            # the graph is not built, so say here what it would have said of the edges
            for edge, loc in zip(edges, origin, strict=True):
                for end in dict.fromkeys((edge.source, edge.target)):
                    if end not in seen:
                        self.problems.append(
                            self.doc.problem(
                                loc,
                                f"edge {edge.source} -> {edge.target} names node {end!r}, "
                                f"which is not defined{nearest(end, seen)}",
                            )
                        )
            return None, False
        try:
            graph = Graph(nodes, edges, output=spec.output, name=spec.name or self.doc.path.stem)
        except GraphError as exc:
            if exc.edge is not None:
                loc = origin[exc.edge]
            elif exc.node is not None and exc.node in seen:
                loc = ("nodes", seen[exc.node])
            else:
                loc = ("output",)
            self.problems.append(self.doc.problem(loc, str(exc)))
            return None, False
        line = (
            not conditional
            and spec.output is None
            and all(
                len(graph.parents[n]) <= 1 and len(graph.children_of[n]) <= 1 for n in graph.nodes
            )
        )
        return graph, line

    def graph_node(self, spec: NodeSpec, node_id: str, loc: Loc) -> Node | None:
        """The graph node of one node spec."""
        if spec.filter is not None:
            text = spec.filter
            keep = self.attempt(
                (*loc, "filter"), lambda: Expression(text, where=f"filter {node_id}")
            )
            self.check_options(spec, loc)
            return None if keep is None else Node(keep=keep)
        if spec.route is not None:
            on = spec.route.on
            # route keys are YAML keys, so text: the selector's value is compared as text
            choose = self.attempt(
                (*loc, "route", "on"),
                lambda: _Selector(on, where=f"route {node_id}"),
            )
            self.check_options(spec, loc)
            return None if choose is None else Node(choose=choose)
        built = self.node_step(spec, node_id, loc)
        if built is None:
            return None
        context = spec.llm is not None and spec.llm.prompt is not None
        return Node(built, input="context" if context else "parents")

    def check_fields(
        self,
        nodes: Mapping[str, Node],
        edges: Sequence[Edge],
        conditions: Sequence[tuple[Loc, str]],
        seen: Mapping[str, int],
    ) -> None:
        """Record a problem for a condition's ``node.field`` or a map's ``over:`` that
        names a field the node before does not declare (see :mod:`.fields`)."""
        declared = {
            node_id: declared_fields(node.step) if node.step is not None else None
            for node_id, node in nodes.items()
        }

        def missing(wanted: str, fields: list[str] | None, what: str) -> str | None:
            if fields is None or wanted in fields:
                return None
            return (
                f"{what} has no field {wanted!r}{nearest(wanted, fields)}; its fields: "
                + ", ".join(fields)
            )

        for loc, text in conditions:
            for name, wanted in fields_used(text):
                problem = missing(wanted, declared.get(name), f"the output of {name!r}")
                if problem is not None:
                    self.problems.append(self.doc.problem(loc, f"the condition: {problem}"))
        for node_id, index in seen.items():
            mapping = self.spec.nodes[index].map
            if mapping is None or mapping.over is None:
                continue
            parents = {e.source for e in edges if e.target == node_id}
            for parent in sorted(parents):
                problem = missing(mapping.over, declared.get(parent), f"the output of {parent!r}")
                if problem is not None:
                    self.problems.append(
                        self.doc.problem(("nodes", index, "map", "over"), f"map.over: {problem}")
                    )


class _Selector(Expression):
    """A route's selector: its value is compared with the route's keys, which YAML
    gives as text, as text (``str(value)``)."""

    def __call__(self, names: Mapping[str, Any]) -> str:
        return str(super().__call__(names))


def _aliases(
    doc: Document, spec: RecipeSpec, allow: Sequence[str] | None, chain: tuple[Path, ...]
) -> tuple[dict[str, ModelAlias], list[Problem]]:
    """The model aliases of a recipe: its own, and those of the files it includes."""
    aliases = dict(spec.models)
    problems: list[Problem] = []
    for index, name in enumerate(spec.include):
        loc: Loc = ("include", index)
        target = (doc.path.parent / name).resolve()  # symlinks followed, then confined
        home = (chain[0] if chain else doc.path).parent.resolve()
        if not target.is_relative_to(home):
            problems.append(doc.problem(loc, f"{name!r} leads out of the recipe's folder"))
            continue
        if target in chain:
            cycle = " -> ".join(p.name for p in (*chain, target))
            problems.append(doc.problem(loc, f"the files include each other: {cycle}"))
            continue
        try:
            included = read_spec(target, overrides=(), partial=True)
            more, found = _aliases(included.document, included.spec, allow, (*chain, target))
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(found)
        for alias, value in more.items():
            if alias in aliases:
                problems.append(doc.problem(loc, f"model alias {alias!r} is defined twice"))
            else:
                aliases[alias] = value
    return aliases, problems


def _import_paths(doc: Document, spec: RecipeSpec, folder: Path) -> list[Problem]:
    """Put the recipe's ``paths:`` (folders inside its own) on ``sys.path``, after
    installed packages; a path leading out of the recipe's folder is refused."""
    problems = []
    for index, given in enumerate(spec.paths):
        where = (folder / given).resolve()
        if not where.is_relative_to(folder):
            problems.append(
                doc.problem(("paths", index), f"{given!r} leads out of the recipe's folder")
            )
        elif not where.is_dir():
            problems.append(doc.problem(("paths", index), f"{given!r} is not a folder"))
        else:
            import_path(where)
    return problems


def build(
    path: str | Path,
    *,
    overrides: Iterable[str] = (),
    allow: Sequence[str] | None = None,
    chain: tuple[Path, ...] = (),
) -> Built:
    """Read, check and build the recipe at ``path``.

    Raises:
        RecipeError: every problem found, each with its ``file:line:column``.
    """
    target = Path(path).resolve()
    read = read_spec(target, overrides=overrides)
    doc, spec = read.document, read.spec
    chain = (*chain, target)
    aliases, problems = _aliases(doc, spec, allow, chain)
    problems.extend(_import_paths(doc, spec, target.parent))
    builder = _Builder(doc, spec, aliases, allow, chain)
    builder.problems.extend(problems)
    graph, line = builder.graph()
    if builder.problems or graph is None:
        raise RecipeError(builder.problems)
    pipeline: Step[Any, Any] = graph
    if line:
        from ..pipeline.compose import Sequence as Line

        steps = [s for s in (graph.nodes[n].step for n in graph.order) if s is not None]
        pipeline = steps[0] if len(steps) == 1 else Line(*steps, name=graph.name)
    return Built(spec, doc, pipeline, graph, aliases, builder.clients)
