"""Recipes: whole pipelines in YAML, validated, sandboxed, runnable from the command line.

::

    recipe = hr.recipe.load("sotu.yaml", overrides=["run.concurrency=16"])
    print(recipe.plan())                 # what would run, and an estimate of calls
    result = recipe.run(run_dir=".headrace/sotu")

    pipeline = hr.load_recipe("sotu.yaml")   # the pipeline alone, a step like any other

A recipe builds the very steps its Python equivalent would (see
:mod:`headrace.recipe.build`), so everything the engine does for Python
pipelines (limits, caches, durable runs) it does for recipes. Security: a recipe
reaches Python only through the import paths it names (:mod:`.registry`, with
``allow`` prefixes), and its conditions and templates run in
:mod:`headrace.sandbox`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .build import Built, build
from .document import Place, Problem, RecipeError
from .schema import RecipeSpec

if TYPE_CHECKING:
    from ..engine.result import RunResult
    from ..io.records import DurableSink, Source
    from ..pipeline.step import Step

__all__ = ["Place", "Problem", "Recipe", "RecipeError", "RecipeSpec", "load", "load_recipe"]


class Recipe:
    """A recipe file, checked and built: its pipeline, source, sink and run options.

    Args:
        path: the recipe file.
        overrides: ``key.path=value`` settings applied before checking (``--set``).
        allow: import only modules under these prefixes (``--allow``).
        allow_paths: folders outside the recipe's own that its source and sink may
            name (``--allow-path``). Without them a recipe reads and writes only
            inside its folder: ``../`` and absolute paths elsewhere are refused.

    Raises:
        RecipeError: every problem found, each naming ``file:line:column`` and the field.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overrides: Iterable[str] = (),
        allow: Sequence[str] | None = None,
        allow_paths: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.path = Path(path).resolve()
        self.overrides = tuple(overrides)
        self.allow = tuple(allow) if allow is not None else None
        self.allow_paths = tuple(str(Path(p).expanduser().resolve()) for p in allow_paths)
        self.built: Built = build(self.path, overrides=self.overrides, allow=self.allow)
        self.spec: RecipeSpec = self.built.spec
        self.pipeline: Step[Any, Any] = self.built.pipeline
        self.name = self.spec.name or self.path.stem

    REF_PREFIX = "recipe:"

    @property
    def ref(self) -> str:
        """How a durable run stores this recipe, so ``headrace resume`` can build it again."""
        import json

        settings = {
            "path": str(self.path),
            "set": list(self.overrides),
            "allow": self.allow,
            "allow_paths": list(self.allow_paths),
        }
        return self.REF_PREFIX + json.dumps(settings, sort_keys=True)

    @classmethod
    def from_ref(cls, ref: str) -> Recipe:
        """The recipe a stored :attr:`ref` names, built again with the same settings."""
        import json

        settings = json.loads(ref.removeprefix(cls.REF_PREFIX))
        return cls(
            settings["path"],
            overrides=settings["set"],
            allow=settings["allow"],
            allow_paths=settings.get("allow_paths", ()),
        )

    def _missing(self, section: str) -> RecipeError:
        place = Place(self.built.document.place(()).file, 1, 1)
        return RecipeError(
            [Problem(place, section, f"running the recipe needs a {section}: section")]
        )

    def _file(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.path.parent / path

    def check_paths(self, sections: Sequence[str] = ("source", "sink")) -> None:
        """Refuse a source or sink path outside the recipe's folder and the allowed ones.

        Checked where the section is used (:meth:`source`, :meth:`sink`), so a section
        that ``--input`` or ``--output`` replaces is not confined; ``headrace validate``
        checks both.

        Raises:
            RecipeError: a path outside, each one named with its place in the file.
        """
        folders = [self.path.parent, *(Path(p) for p in self.allow_paths)]
        problems = []
        for section in sections:
            spec = getattr(self.spec, section)
            if spec is None:
                continue
            for field in ("jsonl", "csv", "parquet", "dir", "sql"):
                given = getattr(spec, field, None)
                if not given:
                    continue
                if field == "sql":
                    if not given.startswith("sqlite:///"):
                        continue  # a database server, not a file
                    given = given.removeprefix("sqlite:///")
                where = self._file(given).resolve()
                if not any(where.is_relative_to(folder) for folder in folders):
                    problems.append(
                        self.built.document.problem(
                            (section, field),
                            f"{given!r} is outside the recipe's folder; a recipe reads and "
                            "writes only there unless the command line allows the path "
                            "(--allow-path DIR, allow_paths= in Python)",
                        )
                    )
        if problems:
            raise RecipeError(problems)

    def source(self) -> Source:
        """The items the recipe reads.

        Raises:
            RecipeError: the recipe has no ``source:``.
        """
        from ..io.formats import by_name

        spec = self.spec.source
        if spec is None:
            raise self._missing("source")
        self.check_paths(("source",))
        name = next(n for n in ("jsonl", "csv", "parquet", "dir") if getattr(spec, n))
        reader = by_name(name).read
        assert reader is not None
        if name == "dir":
            return reader(self._file(str(spec.dir)))
        return reader(self._file(str(getattr(spec, name))), key=spec.key)

    def sink(self) -> DurableSink:
        """Where the recipe writes.

        Raises:
            RecipeError: the recipe has no ``sink:``.
        """
        from ..io.formats import by_name

        spec = self.spec.sink
        if spec is None:
            raise self._missing("sink")
        self.check_paths(("sink",))
        columns: dict[str, str] | None = dict(spec.columns) if spec.columns else None
        name = next(n for n in ("jsonl", "csv", "parquet", "dir", "sql") if getattr(spec, n))
        writer = by_name(name).write
        assert writer is not None
        if name == "sql":
            assert spec.sql is not None and spec.table is not None
            return writer(spec.sql, spec.table, key=spec.key, columns=columns)
        path = self._file(str(getattr(spec, name)))
        return writer(path, columns=columns) if name in ("csv", "parquet") else writer(path)

    def run_options(self) -> dict[str, Any]:
        """The ``run:`` section as :func:`~headrace.run` keyword arguments."""
        from ..limits.budget import Budget

        run = self.spec.run
        options: dict[str, Any] = {
            "window": run.concurrency,
            "ordered": run.ordered,
            "on_error": run.on_error,
            "on_bad_input": run.on_bad_input,
            "duplicates": run.duplicates,
        }
        if run.deadline is not None:
            options["deadline"] = run.deadline
        if run.budget_usd is not None or run.budget_tokens is not None:
            options["budget"] = Budget(
                usd=run.budget_usd, tokens=run.budget_tokens, shared=run.budget_shared
            )
        if run.backend == "ray":
            from ..cluster import Ray

            options["backend"] = Ray(
                workers=run.workers, shard_size=run.shard_size, num_gpus=run.num_gpus
            )
        return options

    def run(
        self,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        resume: bool | Literal["auto"] = "auto",
        fresh: bool = False,
        force: bool = False,
        progress: bool = True,
    ) -> RunResult:
        """Run the recipe from its source to its sink, durably: ``run_dir`` defaults to
        ``.headrace/<name>`` in the current directory (where ``headrace run`` puts it).
        ``resume`` and ``fresh`` are :func:`~headrace.run`'s: by default a run found in
        ``run_dir`` is resumed, and one is started otherwise."""
        import asyncio

        from ..engine.runner import RunOptions, run_with

        options = RunOptions.of(
            run_dir=run_dir if run_dir is not None else self.default_run_dir(),
            resume=resume,
            fresh=fresh,
            force=force,
            progress=progress,
            **self.run_options(),
        )
        # stored as the recipe's ref, as `headrace run` stores it: `headrace resume` can
        # build it again, and a fresh start knows which recipe made the run it meets
        run = run_with(
            self.pipeline, self.source(), sink=self.sink(), options=options, pipeline_ref=self.ref
        )
        return asyncio.run(run)

    def default_run_dir(self) -> Path:
        """``.headrace/<recipe name>`` in the current directory."""
        return Path(".headrace") / self.name

    def plan(
        self,
        *,
        sample: int = 20,
        source: Source | None = None,
        source_text: str | None = None,
        sink_text: str | None = None,
        run_dir: Path | None = None,
    ) -> str:
        """What would run, and an estimate of requests, tokens and cost; no call is made.

        Args:
            sample: records read to estimate prompt sizes.
            source: what the run reads in place of the recipe's source (``--input``),
                shown as ``source_text``.
            sink_text: what the run writes to in place of the recipe's sink (``--output``).
            run_dir: the run's folder (default: :meth:`default_run_dir`): a pilot's
                figures kept there by ``headrace estimate`` are shown in place of the
                upper bounds.
        """
        from .plan import describe

        return describe(
            self,
            sample=sample,
            source=source,
            source_text=source_text,
            sink_text=sink_text,
            run_dir=run_dir or self.default_run_dir(),
        )


def load(
    path: str | os.PathLike[str],
    *,
    overrides: Iterable[str] = (),
    allow: Sequence[str] | None = None,
    allow_paths: Sequence[str | os.PathLike[str]] = (),
) -> Recipe:
    """Read, check and build a recipe; see :class:`Recipe`."""
    return Recipe(path, overrides=overrides, allow=allow, allow_paths=allow_paths)


def load_recipe(
    path: str | os.PathLike[str],
    *,
    overrides: Iterable[str] = (),
    allow: Sequence[str] | None = None,
    allow_paths: Sequence[str | os.PathLike[str]] = (),
) -> Step[Any, Any]:
    """The pipeline a recipe file describes: a step like any other, for ``hr.run``.

    Raises:
        RecipeError: every problem found, each naming ``file:line:column`` and the field.
    """
    return Recipe(path, overrides=overrides, allow=allow, allow_paths=allow_paths).pipeline
