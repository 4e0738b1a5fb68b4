"""What the options of ``headrace run`` and ``resume`` name: the source (``--input``),
the sink (``--output``, ``--table``, ``--columns``), the backend (``--backend``
and its flags) and the tier (``--tier``), each refused in one line naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import MissingExtra

__all__: list[str] = []


def _sink_for(
    output: str, table: str | None, key: str | None, columns: list[str] | None = None
) -> Any:
    """The sink an ``--output`` names (see :func:`headrace.io.sink_at`), with the
    ``--columns name=type`` given."""
    from ..io import sink_at

    typed = _column_types(columns)
    try:
        return sink_at(output, table=table, key=key, columns=typed)
    except MissingExtra as exc:
        typer.echo(f"error: --output {output}: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        hint = "--columns" if typed and "column" in str(exc) else "--output"
        raise typer.BadParameter(
            str(exc), param_hint=hint if table is None else "--table"
        ) from None


def _column_types(columns: list[str] | None) -> dict[str, str] | None:
    """``["embedding=list<float64>", ...]`` as a dict, each type checked."""
    if not columns:
        return None
    from ..io.column_types import check_type

    typed: dict[str, str] = {}
    for given in columns:
        name, equals, kind = given.partition("=")
        if not equals or not name.strip():
            raise typer.BadParameter(
                f"{given!r}: give name=type, e.g. embedding=list<float64>", param_hint="--columns"
            )
        try:
            typed[name.strip()] = check_type(kind.strip())
        except ValueError as exc:
            raise typer.BadParameter(f"{name.strip()}: {exc}", param_hint="--columns") from None
    return typed


def _source_for(path: Path, key: str | None) -> Any:
    """The source an ``--input`` names, by its suffix, or a directory of files."""
    from ..io import source_at

    try:
        return source_at(path, key=key)
    except MissingExtra as exc:
        typer.echo(f"error: --input {path}: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input") from None


def _backend(
    backend: str | None,
    workers: int | None,
    shard_size: int | None,
    address: str | None,
    num_gpus: float | None,
) -> Any:
    """The ``hr.Ray`` that --backend ray and its flags name, ``False`` for --backend local
    (this process even where a recipe says ray), ``None`` when not given."""
    from ..errors import HeadraceError

    if backend not in (None, "local", "ray"):
        raise typer.BadParameter(f"{backend!r}: use 'local' or 'ray'", param_hint="--backend")
    given = [
        flag
        for flag, value in (
            ("--workers", workers),
            ("--shard-size", shard_size),
            ("--ray-address", address),
            ("--num-gpus", num_gpus),
        )
        if value is not None
    ]
    if given and backend != "ray":
        raise typer.BadParameter(f"{', '.join(given)} go with --backend ray")
    if backend != "ray":
        return False if backend == "local" else None
    from ..cluster import Ray

    try:
        return Ray(
            address=address, workers=workers or 2, shard_size=shard_size, num_gpus=num_gpus or 0.0
        )
    except HeadraceError as exc:
        raise typer.BadParameter(str(exc), param_hint="--backend") from None


def _stored_backend(description: Any) -> Any:
    """The backend a stored run was started with (``None``: this process)."""
    if description is None:
        return None
    from ..cluster import Ray
    from ..errors import HeadraceError

    try:
        return Ray.from_description(description)
    except HeadraceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _with_tier(tier: str | None, recipe: bool, overrides: list[str] | None) -> list[str] | None:
    """A recipe's ``--set`` overrides with ``--tier``'s (``run.tier``) added."""
    if tier is None:
        return overrides
    if not recipe:
        raise typer.BadParameter(
            "--tier is for recipes; a Python pipeline says tier= on its LLM steps",
            param_hint="--tier",
        )
    if tier not in ("online", "flex", "batch", "auto"):
        raise typer.BadParameter(
            f"'online', 'flex', 'batch' or 'auto', not {tier!r}", param_hint="--tier"
        )
    return [*(overrides or []), f"run.tier={tier}"]
