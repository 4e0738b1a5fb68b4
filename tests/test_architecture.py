"""The architecture check catches an upward import and a new cycle, and passes today."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import grimp

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_architecture.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_architecture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layers_and_has_no_new_cycle() -> None:
    check = checker()
    assert check.problems(check.build_graph()) == []


def test_imports_made_only_for_type_checking_are_counted() -> None:
    """``cache_stage`` names ``RunContext`` only under ``if TYPE_CHECKING:``: the graph
    the check reads has that arrow (it left such arrows out, and hid a 24-file circle)."""
    graph = checker().build_graph()
    imported = graph.find_modules_directly_imported_by("headrace.engine.cache_stage")
    assert "headrace.engine.context" in imported


def test_an_upward_import_a_cycle_and_an_unplaced_module_are_each_reported() -> None:
    check = checker()
    graph = grimp.ImportGraph()
    for module in ("headrace", "headrace.errors", "headrace.cli", "headrace.io.jsonl",
                   "headrace.io.csvfile", "headrace.elsewhere"):  # fmt: skip
        graph.add_module(module)
    graph.add_import(importer="headrace.errors", imported="headrace.cli", line_number=3,
                     line_contents="from .cli import app")  # fmt: skip
    graph.add_import(importer="headrace.io.jsonl", imported="headrace.io.csvfile",
                     line_number=1, line_contents="from .csvfile import x")  # fmt: skip
    graph.add_import(importer="headrace.io.csvfile", imported="headrace.io.jsonl",
                     line_number=1, line_contents="from .jsonl import y")  # fmt: skip
    found = check.problems(graph)
    assert found == [
        "headrace.elsewhere: in no layer (add it to LAYERS in this script)",
        "headrace.errors (layer 0) imports headrace.cli (layer 6), line 3: a lower layer "
        "imports a higher one",
        "an import cycle: headrace.io.csvfile -> headrace.io.jsonl",
    ]


def test_the_one_allowed_cycle_is_allowed() -> None:
    check = checker()
    graph = grimp.ImportGraph()
    for module in ("headrace.pipeline.step", "headrace.pipeline.compose"):
        graph.add_module(module)
    graph.add_import(importer="headrace.pipeline.step", imported="headrace.pipeline.compose")
    graph.add_import(importer="headrace.pipeline.compose", imported="headrace.pipeline.step")
    assert check.problems(graph) == []


def test_the_report_importing_the_engine_is_reported() -> None:
    check = checker()
    graph = grimp.ImportGraph()
    for module in ("headrace.report.page", "headrace.engine.run_loop"):
        graph.add_module(module)
    graph.add_import(importer="headrace.report.page", imported="headrace.engine.run_loop")
    assert check.problems(graph) == [
        "headrace.report.page imports headrace.engine.run_loop: a report reads a run back "
        "from its store and the metrics package, whatever ran it"
    ]


def test_a_long_module_and_a_module_at_the_top_are_each_reported(tmp_path: Path) -> None:
    check = checker()
    root = tmp_path / "headrace"
    (root / "engine").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "_types.py").write_text("")
    (root / "engine" / "loop.py").write_text("x = 1\n" * (check.MAX_LINES + 1))
    (root / "engine" / "short.py").write_text("x = 1\n" * check.MAX_LINES)
    (root / "helpers.py").write_text("")
    assert check.layout_problems(root) == [
        f"headrace/engine/loop.py: {check.MAX_LINES + 1} lines, over {check.MAX_LINES}: "
        "split it by concept",
        "headrace/helpers.py: a module at the top of the package; put it in the package it "
        "belongs to",
    ]
    assert check.layout_problems(check.SOURCE) == []
