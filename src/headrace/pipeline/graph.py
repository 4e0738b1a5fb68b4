"""Graphs: steps joined by edges, for pipelines that are not a straight line.

::

    pipeline = hr.graph(
        {"clean": clean, "tone": tone, "embed": embed, "deep": deep},
        edges=[
            "clean -> [tone, embed]",
            hr.edge("tone", "deep", when=lambda names: names["tone"].tone == "combative"),
        ],
    )

Per item, every node runs as soon as all of its parents are decided, so
independent branches run at the same time. What a node receives:

- a node without parents (a *root*) gets the item;
- a node with one parent gets that parent's output;
- a node with several parents (a *fan-in*) waits for all of them and gets a dict
  of their outputs keyed by node id (the parents that were skipped are left out);
- a node made with ``hr.node(step, input="context")`` gets the *names* instead.

The *names* are what conditions, selectors and templates see: the item's fields
(a dict's keys, a model's or dataclass's fields, ``text`` for a string), then
``record`` (the item itself), the output of every ancestor that ran under its node
id, and ``input`` (the node's input). A condition on an edge also sees its source's
output as ``output``.

An edge with ``when=`` fires only when the condition is true of its source's names;
a node none of whose incoming edges fired is *skipped*, and so are the nodes only
it leads to. A node with ``choose=`` (a router) fires the edges whose ``branch``
equals its selector's value, or else its ``branch=hr.OTHERWISE`` edges. A node
with ``keep=`` (a filter) drops the whole item when its predicate is false, as a
step returning ``hr.FILTERED`` does. If a node fails, the item fails.

The graph's output is its ``output`` node's output, or a dict of its ``output``
nodes' outputs (``None`` for a skipped one); by default the one node without
children, or a dict of all of them when there are several. An item whose single
output node was skipped ends as filtered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from ..errors import GraphError, PipelineError
from ..values.checks import nearest
from ..values.fields import fields_of
from .fingerprint import code_hash
from .step import Step, as_step

__all__ = [
    "OTHERWISE",
    "Edge",
    "Graph",
    "GraphError",
    "Node",
    "edge",
    "graph",
    "names_of",
    "node",
    "parse_edge",
]

NODE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
RESERVED = frozenset({"record", "input", "output"})
"""Names the graph defines itself, so no node may take them."""


class _Otherwise:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OTHERWISE"


OTHERWISE: Any = _Otherwise()
"""The ``branch`` of a router's edge taken when no other branch matches."""


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge from node ``source`` to node ``target``; see :func:`edge`."""

    source: str
    target: str
    when: Callable[[Mapping[str, Any]], Any] | None = None
    branch: Hashable | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a graph; see :func:`node`."""

    step: Step[Any, Any] | None = None
    input: Literal["parents", "context"] = "parents"
    keep: Callable[[Mapping[str, Any]], Any] | None = None
    choose: Callable[[Mapping[str, Any]], Hashable] | None = None


def node(
    step: Step[Any, Any] | Callable[[Any], Any] | None = None,
    *,
    input: Literal["parents", "context"] = "parents",
    keep: Callable[[Mapping[str, Any]], Any] | None = None,
    choose: Callable[[Mapping[str, Any]], Hashable] | None = None,
) -> Node:
    """A graph node with options; a bare step in :func:`graph`'s ``nodes`` is ``node(step)``.

    Args:
        step: what the node runs; ``None`` passes its input on unchanged (a join,
            a filter or a router point).
        input: ``"parents"`` (its parents' outputs, the default) or ``"context"``
            (the names: the item's fields, ``record``, ancestors' outputs, ``input``).
        keep: a predicate of the names; false drops the whole item (filtered).
        choose: a selector of the names; the node's edges with that ``branch`` fire.
    """
    if input not in ("parents", "context"):
        raise PipelineError(f"node input must be 'parents' or 'context', got {input!r}")
    for option, value in (("keep", keep), ("choose", choose)):
        if value is not None and not callable(value):
            raise PipelineError(f"node {option}= must be a function of the names, got {value!r}")
    return Node(as_step(step, after=None) if step is not None else None, input, keep, choose)


def edge(
    source: str,
    target: str,
    *,
    when: Callable[[Mapping[str, Any]], Any] | None = None,
    branch: Hashable | None = None,
) -> Edge:
    """An edge of a graph, firing when ``when(names)`` is true (always, without one).

    ``branch`` is for the edges out of a router (a node with ``choose=``): the
    edge fires when the selector returns ``branch`` (or, for
    :data:`OTHERWISE`, when no other branch matched).
    """
    if when is not None and not callable(when):
        raise PipelineError(f"edge when= must be a function of the names, got {when!r}")
    return Edge(source, target, when, branch)


def parse_edge(text: str) -> list[tuple[str, str]]:
    """The (source, target) pairs of ``"a -> b"``, ``"a -> [b, c]"``, ``"[a, b] -> c"``
    or a chain ``"a -> b -> c"``.

    Raises:
        PipelineError: the text is not of that form.
    """
    parts = [part.strip() for part in text.split("->")]
    if len(parts) < 2:
        raise PipelineError(f"an edge reads 'a -> b' or 'a -> [b, c]', got {text!r}")
    groups: list[list[str]] = []
    for part in parts:
        if part.startswith("[") and part.endswith("]"):
            names = [name.strip() for name in part[1:-1].split(",")]
        else:
            names = [part]
        for name in names:
            if not NODE_ID.match(name):
                raise PipelineError(
                    f"{name!r} in edge {text!r} is not a node id (a letter, then letters, "
                    "digits or _)"
                )
        groups.append(names)
    return [(s, t) for left, right in pairwise(groups) for s in left for t in right]


def names_of(record: Any) -> dict[str, Any]:
    """The fields of an item as names for a condition (:func:`~headrace.values.fields.fields_of`;
    nothing for an item without fields)."""
    return fields_of(record, strict=False)


def _identity_of(fn: Callable[..., Any] | None) -> str | None:
    if fn is None:
        return None
    source = getattr(fn, "source", None)  # a sandboxed Expression is known by its text
    return f"expr:{source}" if isinstance(source, str) else code_hash(fn)


class Graph(Step[Any, Any]):
    """Nodes joined by edges, run per item; see :func:`graph` and the module's notes."""

    def __init__(
        self,
        nodes: Mapping[str, Node],
        edges: Sequence[Edge],
        *,
        output: str | Sequence[str] | None = None,
        name: str = "graph",
    ) -> None:
        self.nodes = dict(nodes)
        self.edges = tuple(edges)
        self.name = name
        self._check_nodes()
        self.parents: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        self.children_of: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        self._check_edges()
        self.order = self._topological_order()
        self.ancestors: dict[str, frozenset[str]] = {}
        for n in self.order:
            above: set[str] = set()
            for e in self.parents[n]:
                above |= {e.source, *self.ancestors[e.source]}
            self.ancestors[n] = frozenset(above)
        self.roots = [n for n in self.order if not self.parents[n]]
        self.indegree = {n: len(self.parents[n]) for n in self.nodes}
        leaves = [n for n in self.nodes if not self.children_of[n]]
        self.output: str | tuple[str, ...] = (
            (leaves[0] if len(leaves) == 1 else tuple(leaves))
            if output is None
            else (output if isinstance(output, str) else tuple(output))
        )
        for out in (self.output,) if isinstance(self.output, str) else self.output:
            if out not in self.nodes:
                raise GraphError(
                    f"output names node {out!r}, which is not defined{nearest(out, self.nodes)}"
                )

    def _check_nodes(self) -> None:
        if not self.nodes:
            raise GraphError("a graph needs at least one node")
        for node_id, spec in self.nodes.items():
            if not isinstance(node_id, str) or not NODE_ID.match(node_id):
                raise GraphError(
                    f"{node_id!r} is not a node id (a letter, then letters, digits or _)",
                    node=str(node_id),
                )
            if node_id in RESERVED:
                raise GraphError(
                    f"{node_id!r} is a name the graph defines itself "
                    f"({', '.join(sorted(RESERVED))}); pick another id",
                    node=node_id,
                )
            if not isinstance(spec, Node):
                raise GraphError(f"node {node_id!r} must be hr.node(...)", node=node_id)

    def _check_edges(self) -> None:
        seen: set[tuple[str, str]] = set()
        for index, e in enumerate(self.edges):
            for end in (e.source, e.target):
                if end not in self.nodes:
                    raise GraphError(
                        f"edge {e.source} -> {e.target} names node {end!r}, which is not "
                        f"defined{nearest(end, self.nodes)}",
                        edge=index,
                    )
            if (e.source, e.target) in seen:
                raise GraphError(f"edge {e.source} -> {e.target} is given twice", edge=index)
            seen.add((e.source, e.target))
            routed = self.nodes[e.source].choose is not None
            if routed and (e.branch is None or e.when is not None):
                raise GraphError(
                    f"edge {e.source} -> {e.target} leaves a router: it takes a branch, "
                    "not a condition",
                    edge=index,
                )
            if not routed and e.branch is not None:
                raise GraphError(
                    f"edge {e.source} -> {e.target} has a branch, but {e.source!r} is not "
                    "a router (a node with choose=)",
                    edge=index,
                )
            self.parents[e.target].append(e)
            self.children_of[e.source].append(e)
        if len(self.nodes) > 1:
            for node_id in self.nodes:
                if not self.parents[node_id] and not self.children_of[node_id]:
                    raise GraphError(
                        f"node {node_id!r} is unreachable: no edge leads to it or from it",
                        node=node_id,
                    )

    def _topological_order(self) -> list[str]:
        waiting = {n: len(self.parents[n]) for n in self.nodes}
        ready = [n for n in self.nodes if waiting[n] == 0]
        order: list[str] = []
        while ready:
            current = ready.pop(0)
            order.append(current)
            for e in self.children_of[current]:
                waiting[e.target] -= 1
                if waiting[e.target] == 0:
                    ready.append(e.target)
        if len(order) < len(self.nodes):
            raise self._cycle_error(set(self.nodes) - set(order))
        return order

    def _cycle_error(self, stuck: set[str]) -> GraphError:
        # walk parents inside the stuck set until a node repeats: that walk is a cycle
        path = [min(stuck, key=list(self.nodes).index)]
        while True:
            back = next(e for e in self.parents[path[-1]] if e.source in stuck)
            if back.source in path:
                cycle = [back.source, *reversed(path[path.index(back.source) :])]
                closing = self.edges.index(
                    next(e for e in self.edges if (e.source, e.target) == (cycle[-2], cycle[-1]))
                )
                return GraphError(f"the edges make a cycle: {' -> '.join(cycle)}", edge=closing)
            path.append(back.source)

    def children(self) -> tuple[Step[Any, Any], ...]:
        return tuple(n.step for n in self.nodes.values() if n.step is not None)

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "graph",
            "nodes": {
                node_id: {
                    "step": n.step.fingerprint if n.step is not None else None,
                    "input": n.input,
                    "keep": _identity_of(n.keep),
                    "choose": _identity_of(n.choose),
                }
                for node_id, n in self.nodes.items()
            },
            "edges": sorted(
                [e.source, e.target, _identity_of(e.when), repr(e.branch)] for e in self.edges
            ),
            "output": self.output,
        }


def graph(
    nodes: Mapping[str, Step[Any, Any] | Callable[[Any], Any] | Node],
    edges: Iterable[str | Edge] = (),
    *,
    output: str | Sequence[str] | None = None,
    name: str = "graph",
) -> Graph:
    """Join steps by edges into one step: fan-out, fan-in, conditions and routers.

    Args:
        nodes: node id to a step, a callable, or :func:`node` with options.
        edges: ``"a -> b"``, ``"a -> [b, c]"``, ``"[a, b] -> c"`` strings, or
            :func:`edge` for a condition or a router's branch.
        output: the node (or list of nodes) whose output is the graph's; by default
            the node without children (a dict of all of them when there are several).
        name: the graph's name.

    Raises:
        GraphError: an unknown node, a cycle, an unconnected node, a bad edge.
    """
    specs = {n: s if isinstance(s, Node) else node(s) for n, s in nodes.items()}
    flat: list[Edge] = []
    for item in edges:
        if isinstance(item, Edge):
            flat.append(item)
        elif isinstance(item, str):
            flat.extend(Edge(s, t) for s, t in parse_edge(item))
        else:
            raise GraphError(f"an edge is 'a -> b' or hr.edge(...), got {item!r}")
    return Graph(specs, flat, output=output, name=name)
