"""``headrace validate``, and loading a recipe or a ``module:attribute`` pipeline for
the commands that run one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app

__all__ = ["validate"]


def _load_pipeline(ref: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable)."""
    from ..errors import PipelineError
    from ..loading.imports import import_object

    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {ref!r}", param_hint="PIPELINE")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_object(module_name, attribute, private=True)
    except PipelineError as exc:
        raise typer.BadParameter(f"cannot load {ref}: {exc}", param_hint="PIPELINE") from None


def _recipe(
    path: str | None = None,
    *,
    ref: str | None = None,
    overrides: list[str] | None = None,
    allow: list[str] | None = None,
    allow_paths: list[Path] | None = None,
    trusted: bool = False,
    check_paths: bool = False,
) -> Any:
    """Load a recipe (from its file, or from a stored run's ref), or exit with its problems
    (with ``check_paths``, a source or sink outside its folder among them).

    A recipe file outside the current directory (a downloaded one) is loaded only
    with ``--allow`` (the packages it may import) or ``--trusted``: its import paths
    could otherwise name any function, ``os:system`` included.
    """
    from ..recipe import Recipe, RecipeError

    if path is not None and not allow and not trusted:
        where = Path(path).resolve()
        if not where.is_relative_to(Path.cwd().resolve()):
            typer.echo(
                f"error: {path} is outside this project (the current directory), and a "
                "recipe can name any function to run; give --allow PACKAGE for each package "
                "it may import, or --trusted if you trust it",
                err=True,
            )
            raise typer.Exit(1)
    try:
        if ref is not None:
            return Recipe.from_ref(ref)
        loaded = Recipe(
            path or "",
            overrides=overrides or (),
            allow=allow or None,
            allow_paths=allow_paths or (),
        )
        if check_paths:
            loaded.check_paths()
        return loaded
    except RecipeError as exc:
        typer.echo(str(exc), err=True)
        count = len(exc.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''}; nothing ran", err=True)
        raise typer.Exit(1) from None


def _is_recipe(pipeline: str) -> bool:
    return pipeline.endswith((".yaml", ".yml"))


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a recipe value: --set run.concurrency=16 (repeatable)"),
]
AllowOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow", help="import only modules under this prefix (repeatable; default: any)"
    ),
]
TrustedOption = Annotated[
    bool,
    typer.Option(
        help="run a recipe from outside the current directory without --allow (it may "
        "import and run any function)"
    ),
]
AllowPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--allow-path",
        help="a folder outside the recipe's own that its source and sink may name (repeatable)",
    ),
]


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="the recipe file")],
    set_: SetOption = None,
    allow: AllowOption = None,
    allow_path: AllowPathOption = None,
    trusted: TrustedOption = False,
) -> None:
    """Check a recipe without running it: every problem names file:line:column and the field."""
    loaded = _recipe(
        str(recipe),
        overrides=set_,
        allow=allow,
        allow_paths=allow_path,
        trusted=trusted,
        check_paths=True,
    )
    graph = loaded.built.graph
    edges = len(graph.edges)
    typer.echo(
        f"{recipe}: ok, recipe {loaded.name!r}: {len(graph.nodes)} nodes, {edges} edges, "
        f"fingerprint {loaded.pipeline.fingerprint[:12]}"
    )
