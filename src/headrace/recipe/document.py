"""A recipe file read as plain data, with the line and column of every key and value.

PyYAML's safe loader builds the node tree (anchors, aliases and ``<<`` merge keys
resolved as YAML says); this module turns it into dicts, lists and scalars while
recording where each one came from, keyed by its path (``("nodes", 1, "llm")``).
A duplicate key is an error here, where PyYAML would keep the last one silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._types import Place, Problem
from ..errors import RecipeError
from ..values.checks import nearest

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "Document",
    "Place",
    "Problem",
    "RecipeError",
    "nearest",
    "path_text",
]

MAX_VALUES = 100_000
"""The most values a recipe may expand to, aliases counted each time they are used
(a few lines of nested aliases can otherwise expand to billions: "billion laughs")."""

MAX_DEPTH = 64
"""The deepest a recipe's values may nest."""

Path_ = tuple[str | int, ...]


def path_text(path: Path_) -> str:
    """``("nodes", 1, "llm", "model")`` as ``nodes[1].llm.model``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Document:
    """A YAML file's data, and where each key and value of it sits."""

    path: Path
    data: Any
    values: dict[Path_, Place] = field(default_factory=dict)
    keys: dict[Path_, Place] = field(default_factory=dict)
    _left: int = field(default=MAX_VALUES, init=False, repr=False)  # values still allowed

    @classmethod
    def read(cls, path: Path, *, label: str | None = None) -> Document:
        """Read ``path``.

        Raises:
            RecipeError: the file cannot be read or is not YAML (with its place).
        """
        name = label or str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem = Problem(Place(name, 1, 1), "", f"cannot read the recipe: {exc}")
            raise RecipeError([problem]) from None
        return cls.parse(text, path, label=name)

    @classmethod
    def parse(cls, text: str, path: Path, *, label: str | None = None) -> Document:
        """Parse ``text`` as the contents of ``path``."""
        name = label or str(path)
        loader = yaml.SafeLoader(text)
        doc = cls(path, None)
        doc._left = MAX_VALUES
        try:
            try:
                root = loader.get_single_node()
            except RecursionError:
                problem = f"YAML nested too deep to read (at most {MAX_DEPTH} levels)"
                raise RecipeError([Problem(Place(name, 1, 1), "", problem)]) from None
            if root is None:
                raise RecipeError([Problem(Place(name, 1, 1), "", "the recipe is empty")])
            doc.data = doc._build(loader, root, (), name, set())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or exc.context or "not valid YAML"
            raise RecipeError(
                [Problem(Place(name, line, column), "", f"YAML: {problem}")]
            ) from None
        except yaml.YAMLError as exc:
            raise RecipeError([Problem(Place(name, 1, 1), "", f"YAML: {exc}")]) from None
        finally:
            loader.dispose()
        return doc

    def _build(
        self, loader: yaml.SafeLoader, node: yaml.Node, path: Path_, name: str, open_: set[int]
    ) -> Any:
        self.values[path] = _place(name, node)
        self._left -= 1
        if self._left < 0:
            message = (
                f"the recipe expands to more than {MAX_VALUES:,} values (aliases inside aliases?)"
            )
            raise RecipeError([Problem(_place(name, node), path_text(path), message)])
        if len(path) > MAX_DEPTH:
            message = f"values nest more than {MAX_DEPTH} levels deep"
            raise RecipeError([Problem(_place(name, node), path_text(path), message)])
        if id(node) in open_:
            raise RecipeError(
                [Problem(_place(name, node), path_text(path), "an alias refers to itself")]
            )
        if isinstance(node, yaml.MappingNode):
            # keys written here override those a << merge brings in; twice here is an error
            explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
            loader.flatten_mapping(node)  # resolves << merge keys, merged pairs first
            open_.add(id(node))
            result: dict[str, Any] = {}
            mine: set[str] = set()
            for key_node, value_node in node.value:
                # a plain key is its text: YAML 1.1 would make `on:` or `no:` a boolean
                key = (
                    key_node.value
                    if isinstance(key_node, yaml.ScalarNode)
                    else loader.construct_object(key_node, deep=True)
                )
                where = _place(name, key_node)
                if not isinstance(key, str):
                    problem = Problem(where, path_text(path), f"a key must be text, got {key!r}")
                    raise RecipeError([problem])
                if id(key_node) in explicit:
                    if key in mine:
                        problem = Problem(where, path_text((*path, key)), "this key is given twice")
                        raise RecipeError([problem])
                    mine.add(key)
                elif key in result:
                    continue  # an earlier merge gave it
                self.keys[(*path, key)] = where
                result[key] = self._build(loader, value_node, (*path, key), name, open_)
            open_.discard(id(node))
            return result
        if isinstance(node, yaml.SequenceNode):
            open_.add(id(node))
            items = [
                self._build(loader, item, (*path, index), name, open_)
                for index, item in enumerate(node.value)
            ]
            open_.discard(id(node))
            return items
        return loader.construct_object(node, deep=True)

    def place(self, path: Path_, *, key: bool = False) -> Place:
        """Where ``path`` is (its key when ``key``), or its nearest enclosing part."""
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Place(str(self.path), 1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        """A :class:`Problem` at ``path``."""
        return Problem(self.place(path, key=key), path_text(path), message)


def _place(name: str, node: yaml.Node) -> Place:
    return Place(name, node.start_mark.line + 1, node.start_mark.column + 1)
