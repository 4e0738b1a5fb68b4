"""Every exception headrace raises is defined in the errors package, under HeadraceError."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from services import run_quietly

import headrace as hr
import headrace.errors as errors
import headrace.values.checks as checks

SRC = Path(errors.__file__).parent.parent


def test_every_exception_class_lives_in_the_errors_package_under_headrace_error() -> None:
    elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC / "errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {ast.unparse(b) for b in node.bases}
            if any(b.endswith(("Error", "Exception")) or b == "HeadraceError" for b in bases):
                elsewhere.append(f"{path.relative_to(SRC)}: {node.name}")
    assert elsewhere == []
    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.HeadraceError), name
        assert kind.__doc__, name  # each says when it is raised
        assert kind.__module__ == "headrace.errors", name  # shown by its public name


def test_one_check_of_positive_numbers_names_the_option_everywhere() -> None:
    import pytest

    import headrace as hr

    for make, message in (
        (lambda: hr.write_parquet("x", items_per_file=0), "items_per_file must be a positive"),
        (lambda: hr.Rate(requests=True), "Rate requests must be a positive number, got True"),
        (lambda: hr.Budget(usd=-1), "Budget usd must be a positive number, got -1"),
        (lambda: hr.Retry(attempts=0), "Retry attempts must be a positive integer, got 0"),
        (lambda: hr.map(hr.step(abs), concurrency=1.5), "map concurrency must be a positive"),
    ):
        with pytest.raises(hr.PipelineError, match=message):
            make()
    assert checks.positive_int(3, "x") == 3 and checks.positive_number(2, "y") == 2.0


def test_one_format_registry_serves_the_cli_recipes_and_resumes(tmp_path: Path) -> None:
    import pytest

    from headrace.io import FORMATS, open_sink, open_source, sink_at, source_at

    (tmp_path / "in.csv").write_text("id,n\n1,2\n")
    source = source_at(tmp_path / "in.csv", key="id")
    assert open_source(source.describe()).describe() == source.describe()
    sink = sink_at(str(tmp_path / "out.parquet"))
    assert open_sink(sink.describe()).describe() == sink.describe()
    assert {f.name for f in FORMATS} == {"jsonl", "csv", "parquet", "dir", "sql"}
    with pytest.raises(ValueError, match=r"give a \.jsonl, \.csv, \.parquet file"):
        source_at(tmp_path / "in.txt")
    # a description read back from a run store is untrusted: one line, no TypeError
    with pytest.raises(ValueError, match="the run store's 'csv' description"):
        open_source({"kind": "csv", "path": "x.csv", "evil": 1})


def test_a_key_error_with_a_sentence_reads_as_the_sentence_in_a_dead_letter() -> None:
    @hr.step
    def lookup(item: dict[str, Any]) -> Any:
        if "depz" not in item:
            raise KeyError("the item has no field 'depz'")
        return item

    @hr.step
    def plain(item: dict[str, Any]) -> Any:
        return item["depz"]

    for step, message in ((lookup, "the item has no field 'depz'"), (plain, "'depz'")):
        result = run_quietly(step, [{"id": 1}])
        (dead,) = result.dead_letters
        assert (dead.error_type, dead.message) == ("KeyError", message)
