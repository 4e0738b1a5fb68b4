#!/usr/bin/env python3
"""The architecture check CI runs: headrace's layers, and no import cycles.

Each module belongs to one layer; a module may import its own layer and those
below it, never one above (and the report, above the engine, never the engine:
``APART``). Between modules there is no import cycle, except
the one listed in ``ALLOWED_CYCLES`` with its reason. Every import counts:
those inside functions, and those made only for type checking (under ``if
TYPE_CHECKING:``), which never run but still tie one module to the other's
shape. Where a lower module must talk to a higher one, it names what it needs
as a ``Protocol`` of its own (``metrics.LLMCounters``, ``llm.connection.ClientSettings``,
``cluster.driver.Workers``, ``recipe.plan.LoadedRecipe``, ``tune.flame.Stacks``).

    python scripts/check_architecture.py      # exit 1 and one line per problem

Beside the layers: no module over 400 lines (``MAX_LINES``), and nothing at the top of
the package but ``_types`` and packages (``TOP_LEVEL``).

The layers, bottom up:

0. the shared vocabulary: ``_types``, ``errors``, ``values`` (durations, an item's
   fields), ``services`` (Redis for a script, credentials kept out of messages),
   ``loading`` (import by name, the optional parts installed)
1. the foundations: limits (the gate and the budget included), io, store (durable sessions
   and their writer included), cache, metrics (what a run counts, and every way
   it is shown: progress, time series, Prometheus, OpenTelemetry, verdicts), the sandbox
2. declarations, the ``pipeline`` package: step options, steps, compositions,
   graphs, ``with_input``, fingerprints
3. the ``engine`` package: binding steps to a run (``context``: the binder
   table and the run's context; ``call``, ``graph_run``, ``compose_run``), the
   cache stage of the call chain, the activity count, tasks, the sequencer, the batcher,
   executors, the feed, the plan, the run loop, the runner and its options, progress and the
   result
4. what is built on the engine: the kinds of steps (``llm``, ``models``, ``sim``),
   the ``cluster`` backend that runs the engine in workers, and the ``report``
   that reads a run back (its page and live page)
5. applications: ``recipe``, ``demo``, ``tune`` (``headrace profile`` and ``bench``),
   ``forecast`` (``hr.estimate``: a pilot run projected to the whole source)
6. the command line
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parents[1] / "src" / "headrace"

LAYERS: list[list[str]] = [
    [
        "headrace._types",
        "headrace.errors",
        "headrace.values",
        "headrace.services",
        "headrace.loading",
    ],
    [
        "headrace.limits",
        "headrace.io",
        "headrace.store",
        "headrace.cache",
        "headrace.metrics",
        "headrace.sandbox",
    ],
    ["headrace.pipeline"],
    ["headrace.engine"],
    ["headrace.llm", "headrace.models", "headrace.sim", "headrace.cluster", "headrace.report"],
    ["headrace.recipe", "headrace.demo", "headrace.tune", "headrace.forecast"],
    ["headrace.cli", "headrace.__main__"],
]

ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"headrace.pipeline.step", "headrace.pipeline.compose"}): (
        "a step's operators (a >> b, a | b) build the compositions, which are steps: "
        "both are the declaration layer"
    ),
}


APART: dict[str, tuple[str, str]] = {
    "headrace.report": (
        "headrace.engine",
        "a report reads a run back from its store and the metrics package, whatever ran it",
    ),
}
"""Packages that must not import another one of a layer below them, with the reason."""


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> int | None:
    """The layer ``module`` belongs to (``None`` for the package itself)."""
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    return None


def problems(graph: Any) -> list[str]:
    """Every upward import, unplaced module and disallowed cycle of ``graph`` (a grimp
    import graph of the ``headrace`` package), one line each."""
    found: list[str] = []
    modules = sorted(m for m in graph.modules if m != "headrace")
    for module in modules:
        if layer_of(module) is None:
            found.append(f"{module}: in no layer (add it to LAYERS in this script)")
    for importer in modules:
        low = layer_of(importer)
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            high = layer_of(imported)
            if low is not None and high is not None and high > low:
                lines = sorted(
                    d["line_number"]
                    for d in graph.get_import_details(importer=importer, imported=imported)
                )
                found.append(
                    f"{importer} (layer {low}) imports {imported} (layer {high}), "
                    f"line {', '.join(map(str, lines))}: a lower layer imports a higher one"
                )
    for importer in modules:
        for package, (kept_out, reason) in APART.items():
            if not _under(importer, package):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if _under(imported, kept_out):
                    found.append(f"{importer} imports {imported}: {reason}")
    for cycle in _cycles(graph, modules):
        if frozenset(cycle) not in ALLOWED_CYCLES:
            found.append(f"an import cycle: {' -> '.join(sorted(cycle))}")
    return found


def _cycles(graph: Any, modules: list[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    for module in modules:
        if module not in index:
            visit(module)
    return components


MAX_LINES = 400
"""The most lines a module of ``src/headrace`` may have: past it, it holds two concepts."""

TOP_LEVEL = frozenset({"__init__.py", "__main__.py", "_types.py", "py.typed"})
"""What ``src/headrace`` itself holds beside packages."""


def layout_problems(root: Path) -> list[str]:
    """Modules over :data:`MAX_LINES`, and modules at the top of the package (``root``,
    ``src/headrace``) but those of :data:`TOP_LEVEL`: one line each."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found.append(
                f"{path.relative_to(root.parent)}: {lines} lines, over {MAX_LINES}: split it "
                "by concept"
            )
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name not in TOP_LEVEL:
            found.append(
                f"{path.relative_to(root.parent)}: a module at the top of the package; "
                "put it in the package it belongs to"
            )
    return found


def build_graph() -> Any:
    """The import graph of the installed ``headrace`` package, every import counted."""
    import grimp

    return grimp.build_graph("headrace", exclude_type_checking_imports=False)


def main() -> int:
    graph = build_graph()
    found = problems(graph) + layout_problems(SOURCE)
    for line in found:
        print(f"architecture: {line}", file=sys.stderr)
    if not found:
        print(f"architecture: ok ({len(graph.modules)} modules, {len(LAYERS)} layers)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
