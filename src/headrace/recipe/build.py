"""From a recipe file to a pipeline: validate, resolve, and build the same steps Python would.

Each node becomes the step its Python front end builds (``hr.step``,
``hr.llm.transduce``, ``hr.models.embed``, ``hr.map``...), with the node's id as
the step's name and its policies as the same policy objects; the nodes and
edges become an :func:`~headrace.graph.graph`, or a plain ``a >> b >> c`` when
the recipe is a straight line without conditions. So a recipe and the same
pipeline written in Python have the same fingerprint, and share caches and runs.

Every problem found is collected with its ``file:line:column`` and field path,
and raised together as one :class:`~headrace.recipe.document.RecipeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ..cache import Cache
from ..errors import PipelineError
from ..graph import OTHERWISE, RESERVED, Edge, Graph, GraphError, Node
from ..imports import import_path, resolve
from ..keep import with_input
from ..limits.policies import Fallback, Timeout
from ..limits.rate import Rate
from ..limits.retry import Retry
from ..sandbox import Expression, fields_used
from ..step import Batch, FunctionStep, Step, step
from .document import Document, Problem, RecipeError, nearest
from .fields import declared_fields
from .reading import read_spec
from .schema import (
    KINDS,
    BatchSpec,
    CacheSpec,
    ModelAlias,
    NodeSpec,
    RateSpec,
    RecipeSpec,
    RetrySpec,
    TimeoutSpec,
)

if TYPE_CHECKING:
    from ..llm import Client

__all__ = ["Built", "build"]

Loc = tuple[str | int, ...]
T = TypeVar("T")

POLICIES = ("executor", "batch", "version", "concurrency", "rate", "retry", "timeout", "cache")
"""The options a function node takes, beside ``fallback``."""
TAKES: Mapping[str, frozenset[str]] = {
    "function": frozenset({*POLICIES, "fallback", "keep_input"}),
    "reduce": frozenset({*POLICIES, "fallback"}),
    "llm": frozenset(
        {"version", "concurrency", "retry", "timeout", "cache", "fallback", "keep_input"}
    ),
    "model": frozenset({"version", "keep_input"}),
    "map": frozenset({"keep_input"}),
    "filter": frozenset(),
    "route": frozenset(),
    "recipe": frozenset({"keep_input"}),
}
"""Which node-level options each kind of node takes."""

INSIDE_MAP = ("function", "llm", "model", "recipe")


@dataclass
class Built:
    """What a recipe file builds to."""

    spec: RecipeSpec
    document: Document
    pipeline: Step[Any, Any]
    graph: Graph
    aliases: dict[str, ModelAlias]
    clients: dict[str, Client] = field(default_factory=dict)


class _Builder:
    """Builds one recipe file's steps, collecting its problems."""

    def __init__(
        self,
        doc: Document,
        spec: RecipeSpec,
        aliases: dict[str, ModelAlias],
        allow: Sequence[str] | None,
        chain: tuple[Path, ...],
    ) -> None:
        self.doc = doc
        self.spec = spec
        self.aliases = aliases
        self.allow = allow
        self.chain = chain
        self.folder = doc.path.parent
        self.problems: list[Problem] = []
        self.clients: dict[str, Client] = {}

    def attempt(self, loc: Loc, make: Callable[[], T], *, key: bool = False) -> T | None:
        """``make()``, or ``None`` with its error recorded as a problem at ``loc``."""
        try:
            return make()
        except RecipeError as exc:
            self.problems.extend(exc.problems)
        except (PipelineError, ValueError, TypeError) as exc:
            self.problems.append(self.doc.problem(loc, str(exc), key=key))
        return None

    def path(self, text: str) -> Path:
        """A path the recipe gives, relative to its folder."""
        return (self.folder / text).resolve() if not Path(text).is_absolute() else Path(text)

    # -- policies ----------------------------------------------------------------------

    @staticmethod
    def retry(spec: RetrySpec | None) -> Retry | None:
        return None if spec is None else Retry(**spec.given())

    @staticmethod
    def rate(spec: RateSpec | None) -> Rate | None:
        if spec is None:
            return None
        options = spec.given()
        options.pop("auto", None)
        if spec.auto:
            return Rate.auto(**options)
        return Rate(**options)

    @staticmethod
    def timeout(spec: TimeoutSpec | None) -> Timeout | None:
        return None if spec is None else Timeout(**spec.given())

    def cache(self, spec: CacheSpec | None) -> Cache | None:
        if spec is None:
            return None
        options = spec.given()
        if "path" in options:
            options["path"] = self.path(options["path"])
        return Cache(**options)

    @staticmethod
    def batch(spec: BatchSpec | None) -> Batch | None:
        return None if spec is None else Batch(**spec.given())

    def fallback(self, ref: str | None) -> Fallback | None:
        if ref is None:
            return None
        target = resolve(ref, allow=self.allow)
        return Fallback(target if isinstance(target, Step) else step(target))

    def options(self, spec: NodeSpec, loc: Loc) -> dict[str, Any] | None:
        """The node's policy options as Python objects (``None`` if one is invalid);
        :meth:`check_options` has refused those its kind does not take."""
        converters: dict[str, Callable[[Any], Any]] = {
            "batch": self.batch,
            "rate": self.rate,
            "retry": self.retry,
            "timeout": self.timeout,
            "cache": self.cache,
            "fallback": self.fallback,
        }
        options: dict[str, Any] = {}
        for option in sorted(spec.model_fields_set & TAKES[spec.kind] - {"keep_input"}):
            convert = converters.get(option, lambda value: value)
            value = self.attempt((*loc, option), partial(convert, getattr(spec, option)))
            if value is None:
                return None
            options[option] = value
        return options

    # -- nodes -------------------------------------------------------------------------

    def node_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        """The step a function, reduce, llm, model, map or recipe node runs."""
        kind = spec.kind
        self.check_options(spec, loc)
        builders: dict[str, Callable[[NodeSpec, str, Loc], Step[Any, Any] | None]] = {
            "function": self.function_step,
            "reduce": self.function_step,
            "llm": self.llm_step,
            "model": self.model_step,
            "map": self.map_step,
            "recipe": self.recipe_step,
        }
        built = builders[kind](spec, name, loc)
        keep = spec.keep_input
        if built is None or keep is False or "keep_input" not in TAKES[kind]:
            return built
        field = keep if isinstance(keep, str) else None
        return self.attempt((*loc, "keep_input"), lambda: with_input(built, field=field))

    def function_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        kind = spec.kind
        ref = spec.function if kind == "function" else spec.reduce
        assert ref is not None
        target = self.attempt((*loc, kind), lambda: resolve(ref, allow=self.allow))
        if target is None:
            return None
        options = self.options(spec, loc)
        if options is None:
            return None

        def make() -> Step[Any, Any]:
            if isinstance(target, FunctionStep):
                return target.with_options(name=name, **options)
            if isinstance(target, Step):
                if options:
                    raise PipelineError(f"{ref} is a composed step; give it its options in Python")
                return target.named(name)
            if not callable(target):
                raise PipelineError(f"{ref} is {type(target).__name__}, not a function")
            return FunctionStep(target, name=name, **options)

        return self.attempt((*loc, kind), make)

    def client(self, alias_name: str) -> Client:
        """The one client of a model alias."""
        if alias_name not in self.clients:
            from ..llm import Client
            from ..llm.secrets import bound_hosts

            alias = self.aliases[alias_name]
            retry: dict[str, Any] = (
                {} if alias.retry is None else {"retry": self.retry(alias.retry)}
            )
            self.clients[alias_name] = Client(
                base_url=alias.base_url,
                api_key_env=alias.api_key_env,
                models={alias_name: alias.model},
                rate=self.rate(alias.rate),
                timeout=alias.timeout,
                connections=alias.connections,
                key_hosts=bound_hosts(alias.api_key_env),
                **retry,
            )
        return self.clients[alias_name]

    def llm_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        llm = spec.llm
        assert llm is not None
        if llm.model not in self.aliases:
            self.problems.append(
                self.doc.problem(
                    (*loc, "llm", "model"),
                    f"unknown model alias {llm.model!r}{nearest(llm.model, self.aliases)}"
                    + ("" if self.aliases else "; define it under models:"),
                )
            )
            return None
        alias = self.aliases[llm.model]
        client = self.attempt((*loc, "llm", "model"), lambda: self.client(llm.model))
        if client is None:
            return None
        options = self.options(spec, loc)
        if options is None:
            return None
        common: dict[str, Any] = {"client": client, "model": llm.model, "name": name, **options}
        sampling: dict[str, Any] = {
            "temperature": llm.temperature if llm.temperature is not None else alias.temperature,
            "max_tokens": llm.max_tokens if llm.max_tokens is not None else alias.max_tokens,
        }
        from .. import llm as hr_llm

        if llm.task == "transduce":
            assert llm.output is not None
            output = self.attempt(
                (*loc, "llm", "output"), partial(_model_class, llm.output, self.allow)
            )
            if output is None:
                return None
            return self.attempt(
                (*loc, "llm"),
                lambda: hr_llm.Transduce(
                    output,
                    instructions=llm.instructions,
                    fields=llm.fields,
                    template=llm.prompt,
                    system=llm.system,
                    pack=llm.pack,
                    **sampling,
                    **common,
                ),
            )
        if llm.task == "embed":
            return self.attempt(
                (*loc, "llm"),
                lambda: hr_llm.Embed(field=llm.field, dimensions=llm.dimensions, **common),
            )
        prompt = llm.prompt
        assert prompt is not None
        return self.attempt(
            (*loc, "llm"),
            lambda: hr_llm.Complete(prompt=prompt, system=llm.system, **sampling, **common),
        )

    def model_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        model = spec.model
        assert model is not None
        try:
            from .. import models
        except ImportError as exc:
            self.problems.append(
                self.doc.problem((*loc, "model"), f"model nodes need headrace[models]: {exc}")
            )
            return None
        version: dict[str, Any] = {"version": spec.version} if spec.version is not None else {}
        batch = self.attempt((*loc, "model", "batch"), lambda: self.batch(model.batch))
        common: dict[str, Any] = {"name": name, "field": model.field, **version}
        if model.sentiment:
            return self.attempt(
                (*loc, "model"), lambda: models.Sentiment(sentences=model.sentences, **common)
            )
        device: dict[str, Any] = {
            "device": model.device,
            "batch": batch,
            "pass_size": model.pass_size,
        }
        if model.embed is not None:
            embed = model.embed
            where = None if embed == "default" else self.path(embed)
            return self.attempt(
                (*loc, "model", "embed"),
                lambda: models.Embed(where, normalize=model.normalize, **device, **common),
            )
        assert model.pipeline is not None and model.path is not None
        task, folder = model.pipeline, self.path(model.path)
        return self.attempt(
            (*loc, "model"),
            lambda: models.Pipeline(task, folder, options=model.options, **device, **common),
        )

    def map_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        from ..compose import map as map_step

        mapping = spec.map
        assert mapping is not None
        inner_loc = (*loc, "map", "do")
        if mapping.do.kind not in INSIDE_MAP:
            self.problems.append(
                self.doc.problem(
                    inner_loc,
                    f"a map runs a {', '.join(INSIDE_MAP)} node on each element, "
                    f"not {_a(mapping.do.kind)} node",
                )
            )
            return None
        inner = self.node_step(mapping.do, mapping.do.id or f"{name}_each", inner_loc)
        if inner is None:
            return None
        return self.attempt(
            (*loc, "map"),
            lambda: map_step(
                inner,
                concurrency=mapping.concurrency,
                name=name,
                on_error=mapping.on_error,
                over=mapping.over,
            ),
        )

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

    def check_options(self, spec: NodeSpec, loc: Loc) -> None:
        """Record a problem for each option the node's kind does not take."""
        kind = spec.kind
        for option in sorted(spec.model_fields_set - set(KINDS) - {"id"} - TAKES[kind]):
            hint = ""
            if kind == "llm" and option == "rate" and spec.llm is not None:
                hint = f"; set it on the model alias (models.{spec.llm.model}.rate)"
            self.problems.append(
                self.doc.problem(
                    (*loc, option), f"{option} does not apply to {_a(kind)} node{hint}", key=True
                )
            )


class _Selector(Expression):
    """A route's selector: its value is compared with the route's keys, which YAML
    gives as text, as text (``str(value)``)."""

    def __call__(self, names: Mapping[str, Any]) -> str:
        return str(super().__call__(names))


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" or word == "llm" else f"a {word}"


def _model_class(ref: str, allow: Sequence[str] | None) -> type[BaseModel]:
    target = resolve(ref, allow=allow)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise PipelineError(f"{ref} is not a Pydantic model class")
    return target


def _aliases(
    doc: Document, spec: RecipeSpec, allow: Sequence[str] | None, chain: tuple[Path, ...]
) -> tuple[dict[str, ModelAlias], list[Problem]]:
    """The model aliases of a recipe: its own, and those of the files it includes."""
    aliases = dict(spec.models)
    problems: list[Problem] = []
    for index, name in enumerate(spec.include):
        loc: Loc = ("include", index)
        target = (doc.path.parent / name).resolve()
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
        from ..compose import Sequence as Line

        steps = [s for s in (graph.nodes[n].step for n in graph.order) if s is not None]
        pipeline = steps[0] if len(steps) == 1 else Line(*steps, name=graph.name)
    return Built(spec, doc, pipeline, graph, aliases, builder.clients)
