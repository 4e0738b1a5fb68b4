"""Every exception headrace raises is defined in errors.py, under HeadraceError."""

from __future__ import annotations

import ast
from pathlib import Path

import headrace.errors as errors

SRC = Path(errors.__file__).parent


def test_every_exception_class_lives_in_errors_py_under_headrace_error() -> None:
    elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "errors.py" and path.parent == SRC:
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
