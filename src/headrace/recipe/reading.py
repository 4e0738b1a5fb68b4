"""Reading a recipe file: ``--set`` overrides, the schema check, and Pydantic's
errors turned into problems at their ``file:line:column``, with key suggestions."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from .document import Document, Place, Problem, RecipeError, nearest, path_text
from .schema import NodeSpec, RecipeSpec

__all__ = ["Read", "apply_overrides", "pydantic_problems", "read_spec"]

Loc = tuple[str | int, ...]


def apply_overrides(doc: Document, overrides: Iterable[str]) -> None:
    """Set ``key.path=value`` overrides (``--set``) into ``doc``; the value is YAML.

    A part of the path that is not a number picks a list's element by its ``id``
    (``nodes.tone.retry.attempts=3``). The overridden value's place is the option.

    Raises:
        RecipeError: a malformed override, or a path through something that is not a section.
    """
    for text in overrides:
        place = Place(f"--set {text}", 0, 0)
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            raise RecipeError([Problem(place, "", "write --set key.path=value")])
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise RecipeError([Problem(place, key, f"the value is not YAML: {exc}")]) from None
        target: Any = doc.data
        path: list[str | int] = []
        parts = key.strip().split(".")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(target, list):
                if part.isdigit() and int(part) < len(target):
                    step_to: str | int = int(part)
                else:
                    found = [
                        i
                        for i, e in enumerate(target)
                        if isinstance(e, dict) and e.get("id") == part
                    ]
                    if not found:
                        raise RecipeError(
                            [Problem(place, path_text(tuple(path)), f"no element with id {part!r}")]
                        )
                    step_to = found[0]
            elif isinstance(target, dict):
                step_to = part
                if not last and not isinstance(target.get(part), dict | list):
                    target[part] = {}
            else:
                raise RecipeError(
                    [Problem(place, path_text(tuple(path)), "is not a section, so it has no keys")]
                )
            path.append(step_to)
            if last:
                target[step_to] = value
            else:
                target = target[step_to]
        done = tuple(path)
        for positions in (doc.values, doc.keys):
            for stale in [p for p in positions if p[: len(done)] == done]:
                del positions[stale]
        doc.values[done] = doc.keys[done] = place


def pydantic_problems(
    doc: Document, error: ValidationError, root: type[BaseModel]
) -> list[Problem]:
    """Turn Pydantic's errors into problems at their places, with key suggestions."""
    problems: dict[Loc, Problem] = {}
    for err in error.errors():
        loc, kind = _data_path(doc.data, tuple(err["loc"]), err["type"]), err["type"]
        if loc in problems:
            continue  # one error per place: a union reports once per alternative
        message = str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            names = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
            hint = nearest(str(loc[-1]), names) or (
                f"; it takes {', '.join(names)}" if names else ""
            )
            problems[loc] = doc.problem(loc, f"unknown key{hint}", key=True)
        elif kind == "missing":
            problems[loc] = doc.problem(loc, f"{loc[-1]} is required")
        else:
            problems[loc] = doc.problem(loc, message)
    return list(problems.values())


def _data_path(data: Any, loc: Loc, kind: str) -> Loc:
    """The part of Pydantic's ``loc`` that is a path in the data (without union tags)."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        key = "from" if part == "from_" else part
        if isinstance(data, dict) and key in data:
            data = data[key]
            path.append(key)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            path.append(part)
        elif index == len(loc) - 1 and kind in ("missing", "extra_forbidden"):
            path.append(key)
    return tuple(path)


def _model_at(root: type[BaseModel], path: Loc) -> type[BaseModel] | None:
    """The schema model that describes the section at ``path``."""
    import typing

    current: Any = root
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            found = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            if found is None:
                return None
            current = found.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None) and (
                typing.get_origin(arg) in (list, dict)
                or (isinstance(arg, type) and issubclass(arg, BaseModel))
            ):
                return arg
    return annotation


@dataclass
class Read:
    """A file read and schema-checked."""

    spec: RecipeSpec
    document: Document


class _IncludedSpec(RecipeSpec):
    """An included file: model aliases (and its own includes) only."""

    nodes: list[NodeSpec] = Field(default_factory=list)


def read_spec(path: Path, *, overrides: Iterable[str], partial: bool = False) -> Read:
    """Read and schema-check one file.

    Raises:
        RecipeError: every schema problem, with its place.
    """
    doc = Document.read(path, label=_label(path))
    apply_overrides(doc, overrides)
    if not isinstance(doc.data, dict):
        raise RecipeError(
            [doc.problem((), "a recipe is a mapping of sections (models:, nodes:, ...)")]
        )
    root: type[RecipeSpec] = _IncludedSpec if partial else RecipeSpec
    if partial:
        extra = sorted(set(doc.data) - {"models", "include"})
        if extra:
            raise RecipeError(
                [
                    doc.problem((k,), "an included file holds models: and include: only", key=True)
                    for k in extra
                ]
            )
    try:
        spec = root.model_validate(copy.deepcopy(doc.data))
    except ValidationError as exc:
        raise RecipeError(pydantic_problems(doc, exc, root)) from None
    return Read(spec, doc)


def _label(path: Path) -> str:
    """How errors name a file: relative to the current directory when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
