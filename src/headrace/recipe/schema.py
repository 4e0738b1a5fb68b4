"""The recipe schema: what a recipe file may say, checked by Pydantic.

Every model forbids unknown keys (the error suggests the nearest valid one).
The policy sections (``retry``, ``rate``, ``timeout``, ``cache``, ``batch``) are in
:mod:`.policy_specs`; values a section cannot hold in YAML (functions) are not
offered.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..errors import PipelineError
from ..io.column_types import check_type, nested
from ..pipeline.graph import NODE_ID, parse_edge
from ..values.durations import to_seconds
from .policy_specs import (
    BatchSpec,
    CacheSpec,
    ModelAlias,
    RateSpec,
    RetrySpec,
    Strict,
    TimeoutSpec,
)

__all__ = [
    "BatchSpec",
    "CacheSpec",
    "EdgeSpec",
    "LLMSpec",
    "MapSpec",
    "ModelAlias",
    "ModelSpec",
    "NodeSpec",
    "RateSpec",
    "RecipeSpec",
    "RetrySpec",
    "RouteSpec",
    "RunSpec",
    "SinkSpec",
    "SourceSpec",
    "TimeoutSpec",
]


class SourceSpec(Strict):
    """Where items come from: one of ``jsonl``, ``csv``, ``parquet``, ``dir`` (a path,
    relative to the recipe's folder), with the ``key`` field that names each item."""

    jsonl: str | None = None
    csv: str | None = None
    parquet: str | None = None
    dir: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SourceSpec:
        given = [k for k in ("jsonl", "csv", "parquet", "dir") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of jsonl:, csv:, parquet:, dir:")
        if self.dir and self.key:
            raise ValueError("a dir: source keys each item by its file's path; key: is not taken")
        return self


class SinkSpec(Strict):
    """Where outputs go: one of ``jsonl``, ``csv``, ``parquet``, ``dir`` (a path), or
    ``sql`` (a database URL, with ``table`` and ``key``)."""

    jsonl: str | None = None
    csv: str | None = None
    parquet: str | None = None
    dir: str | None = None
    sql: str | None = None
    table: str | None = None
    key: str = "key"
    columns: dict[str, str] | None = None
    """Column name -> type: string, int64, float64, bool, json; list<T> and
    struct<name: T, ...> for parquet: sinks."""

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        return {name: check_type(kind) for name, kind in value.items()}

    @model_validator(mode="after")
    def _one(self) -> SinkSpec:
        given = [k for k in ("jsonl", "csv", "parquet", "dir", "sql") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of jsonl:, csv:, parquet:, dir:, sql:")
        if (self.sql is None) != (self.table is None):
            raise ValueError("sql: and table: go together")
        if self.columns is not None and not (self.csv or self.parquet or self.sql):
            raise ValueError("columns: is for csv:, parquet: and sql: sinks")
        for name, kind in (self.columns or {}).items():
            if nested(kind) and not self.parquet:
                raise ValueError(f"column {name!r}: {kind} columns are for parquet: sinks")
        if "key" in self.model_fields_set and not self.sql:
            raise ValueError("key: names the key column of a sql: sink")
        return self


class LLMSpec(Strict):
    """An LLM node. ``output`` (an import path of a Pydantic model) makes it
    ``transduce``; ``task: embed`` embeds; otherwise it is ``complete`` (text)."""

    model: str
    task: Literal["complete", "transduce", "embed"] | None = None
    output: str | None = None
    instructions: str = ""
    prompt: str | None = None
    system: str | None = None
    fields: list[str] | None = None
    pack: int = Field(1, ge=1)
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    field: str = "text"
    dimensions: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _task(self) -> LLMSpec:
        task = self.task or ("transduce" if self.output else "complete")
        if task == "transduce" and not self.output:
            raise ValueError("task transduce needs output: (an import path of a Pydantic model)")
        if task != "transduce" and self.output:
            raise ValueError(f"output: is for transduce, not {task}")
        if task == "complete" and not self.prompt:
            raise ValueError("a complete node needs prompt: (or output: to transduce)")
        if task != "transduce" and self.pack > 1:
            raise ValueError("pack: is for transduce")
        object.__setattr__(self, "task", task)
        return self


class ModelSpec(Strict):
    """A local-model node: ``embed`` (``default`` or a model folder), ``sentiment``
    (VADER), or ``pipeline`` (a transformers task, with ``path``)."""

    embed: str | None = None
    sentiment: bool = False
    sentences: bool = False
    pipeline: str | None = None
    path: str | None = None
    field: str | None = None
    device: str | None = None
    normalize: bool = True
    batch: BatchSpec | None = None
    pass_size: int | None = Field(None, ge=1)
    options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelSpec:
        kinds = [k for k in ("embed", "sentiment", "pipeline") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of embed:, sentiment: true, pipeline:")
        if self.pipeline and not self.path:
            raise ValueError("pipeline: needs path: (a local model folder)")
        return self


class RouteSpec(Strict):
    """A router: ``on`` is a sandboxed expression; its value picks the node in ``to``
    (``default`` takes the rest)."""

    on: str
    to: dict[str, str] = Field(min_length=1)
    default: str | None = None


class MapSpec(Strict):
    """A map over a list: ``over`` a field of the node's input (default the input
    itself), running the node ``do`` on each element, ``concurrency`` at once."""

    over: str | None = None
    do: NodeSpec
    concurrency: int = Field(16, ge=1)
    on_error: Literal["fail", "skip"] = "fail"


KINDS = ("function", "reduce", "llm", "model", "map", "filter", "route", "recipe")


class NodeSpec(Strict):
    """One node: exactly one kind (``function``, ``reduce``, ``llm``, ``model``, ``map``,
    ``filter``, ``route``, ``recipe``), and the policies that kind takes."""

    id: str | None = None
    function: str | None = None
    reduce: str | None = None
    llm: LLMSpec | None = None
    model: ModelSpec | None = None
    map: MapSpec | None = None
    filter: str | None = None
    route: RouteSpec | None = None
    recipe: str | None = None
    executor: Literal["async", "thread", "process"] | None = None
    batch: BatchSpec | None = None
    version: str | None = None
    concurrency: int | None = Field(None, ge=1)
    rate: RateSpec | None = None
    retry: RetrySpec | None = None
    timeout: TimeoutSpec | None = None
    cache: CacheSpec | None = None
    tier: Literal["online", "flex", "batch", "auto"] | None = None
    fallback: str | None = None
    keep_input: bool | str = False
    """``true``: the node's output is its input record with the output's fields added;
    a field name: the input record with the whole output under that field."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not NODE_ID.match(value):
            raise ValueError("a node id is a letter, then letters, digits or _")
        return value

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @property
    def kind(self) -> str:
        """Which kind of node this is (checked to be exactly one)."""
        return next(k for k in KINDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _one_kind(self) -> NodeSpec:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            listed = ", ".join(f"{k}:" for k in KINDS)
            got = f" (it has {', '.join(kinds)})" if kinds else ""
            raise ValueError(f"a node has exactly one of {listed}{got}")
        return self


class EdgeSpec(Strict):
    """An edge: the text ``a -> [b, c]`` (also ``[a, b] -> c`` and ``a -> b -> c``), or
    ``{from: a, to: [b, c], when: "expr"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    text: str | None = None
    from_: list[str] = Field([], alias="from")
    to: list[str] = Field(default_factory=list)
    when: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @field_validator("text")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_edge(value)
            except PipelineError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _ends(self) -> EdgeSpec:
        if self.text is None and (not self.from_ or not self.to):
            raise ValueError("an edge needs from: and to: (or the text 'a -> b')")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        """The (source, target) node pairs this edge joins."""
        if self.text is not None:
            return parse_edge(self.text)
        return [(s, t) for s in self.from_ for t in self.to]


class RunSpec(Strict):
    """How the run goes: items in flight, order, errors, a spending limit, where it runs
    (``backend: ray`` with ``workers``, ``shard_size`` and ``num_gpus``, as ``hr.Ray``
    takes them), and the LLM nodes' tier."""

    concurrency: int | None = Field(None, ge=1)
    ordered: bool = False
    on_error: Literal["dead_letter", "raise"] = "dead_letter"
    on_bad_input: Literal["dead_letter", "stop"] = "dead_letter"
    duplicates: Literal["error", "first", "suffix"] = "error"
    budget_usd: float | None = Field(None, gt=0)
    budget_tokens: int | None = Field(None, gt=0)
    budget_shared: str | None = Field(None, pattern=r"^(redis|rediss|unix)://")
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(2, ge=1)
    shard_size: int | None = Field(None, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    tier: Literal["online", "flex", "batch", "auto"] = "online"
    """The tier of every chat LLM node that does not name its own (``--tier``)."""
    deadline: str | float | None = None
    """When the results are needed, from the run's start (``"6h"``; ``--deadline``):
    the ``auto`` tier meets it."""

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            try:
                to_seconds(value, option="run.deadline")
            except PipelineError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _shared_budget(self) -> RunSpec:
        if (
            self.budget_shared is not None
            and self.budget_usd is None
            and self.budget_tokens is None
        ):
            raise ValueError(
                "budget_shared keeps a budget in Redis: give budget_usd or budget_tokens"
            )
        return self


class RecipeSpec(Strict):
    """A whole recipe file."""

    name: str | None = None
    include: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    models: dict[str, ModelAlias] = Field(default_factory=dict)
    source: SourceSpec | None = None
    sink: SinkSpec | None = None
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] | None = None
    output: str | list[str] | None = None
    run: RunSpec = Field(default_factory=lambda: RunSpec.model_validate({}))

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        # the run directory is .headrace/<name>: a path here would place the run store
        # (and what --fresh discards) anywhere
        if value is not None and (not RUN_NAME.fullmatch(value) or ".." in value):
            raise ValueError(
                f"name {value!r} must be a plain name (letters, digits, '.', '_', '-'; no "
                "'/' or '..'): it names the run's directory, .headrace/<name>"
            )
        return value


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

MapSpec.model_rebuild()
