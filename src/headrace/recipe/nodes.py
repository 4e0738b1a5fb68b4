"""The recipe's nodes as steps: each kind of node becomes the step its Python front end
builds (``hr.step``, ``hr.llm.transduce``, ``hr.models.embed``, ``hr.map``, a recipe),
named by the node's id, its policies the same objects; :mod:`.build` joins them."""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ..cache import Cache
from ..errors import PipelineError
from ..limits.policies import Timeout
from ..limits.rate import Rate
from ..limits.retry import Retry
from ..loading.imports import resolve
from ..pipeline.decorator import step
from ..pipeline.keep import WithInput, with_input
from ..pipeline.options import Fallback
from ..pipeline.step import Batch, FunctionStep, Step
from .document import Document, Problem, RecipeError, nearest
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

__all__ = ["INSIDE_MAP", "POLICIES", "TAKES", "Loc", "NodeBuilder"]

Loc = tuple[str | int, ...]
T = TypeVar("T")

POLICIES = ("executor", "batch", "version", "concurrency", "rate", "retry", "timeout", "cache")
"""The options a function node takes, beside ``fallback``."""
TAKES: Mapping[str, frozenset[str]] = {
    "function": frozenset({*POLICIES, "fallback", "keep_input"}),
    "reduce": frozenset({*POLICIES, "fallback"}),
    "llm": frozenset(
        {"version", "concurrency", "retry", "timeout", "cache", "tier", "fallback", "keep_input"}
    ),
    "model": frozenset({"version", "keep_input"}),
    "map": frozenset({"keep_input"}),
    "filter": frozenset(),
    "route": frozenset(),
    "recipe": frozenset({"keep_input"}),
}
"""Which node-level options each kind of node takes."""

INSIDE_MAP = ("function", "llm", "model", "recipe")

_CANNOT_IMPORT = re.compile(r"cannot import '([A-Za-z_][\w.]*)'")


class NodeBuilder(abc.ABC):
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
            self.problems.append(self.doc.problem(loc, self.with_hint(str(exc)), key=key))
        return None

    def with_hint(self, message: str) -> str:
        """``message``, with the line to add when it is a module of the recipe's own
        folder that could not be imported because ``paths:`` does not name the folder."""
        found = _CANNOT_IMPORT.match(message)
        if found is None or "." in self.spec.paths:
            return message
        top = found.group(1).split(".")[0]
        if not ((self.folder / f"{top}.py").is_file() or (self.folder / top).is_dir()):
            return message
        return (
            f"{message}; {top!r} is in the recipe's folder, which is importable only through "
            f'paths: add the line paths: ["."] to {self.doc.path.name}'
        )

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
            if (given := getattr(spec, option)) is None:  # ``cache: false``: the option is off
                continue
            convert = converters.get(option, lambda value: value)
            value = self.attempt((*loc, option), partial(convert, given))
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
        if spec.llm is not None and spec.llm.prompt is not None:
            # a prompt node is handed the names its template reads (the record's fields,
            # record, input, the nodes above): keep only its input's fields, once
            return self.attempt(
                (*loc, "keep_input"), lambda: WithInput(built, field, keeps="input")
            )
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
        if llm.task != "embed":  # the flex and batch tiers are for chat requests
            options.setdefault("tier", self.spec.run.tier)
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
        from ..pipeline.compose import map as map_step

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

    @abc.abstractmethod
    def recipe_step(self, spec: NodeSpec, name: str, loc: Loc) -> Step[Any, Any] | None:
        """The pipeline of another recipe file, as one step (built by :mod:`.build`)."""

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


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" or word == "llm" else f"a {word}"


def _model_class(ref: str, allow: Sequence[str] | None) -> type[BaseModel]:
    target = resolve(ref, allow=allow)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise PipelineError(f"{ref} is not a Pydantic model class")
    return target
