"""The check a run with worker processes makes first: a script that starts it at its
top level, unguarded, would be run again by every worker that imports it."""

from __future__ import annotations

import ast
import sys

from ..errors import PipelineError

__all__ = ["check_main_guard"]


def check_main_guard(step: str) -> None:
    """Refuse to start worker processes from a script that runs its pipeline unguarded.

    Workers import the main script (``forkserver`` and ``spawn`` both do), so a
    script whose ``hr.run(...)`` is not under ``if __name__ == "__main__":`` would
    run the whole pipeline again in every worker: a crash loop of broken pools.

    Raises:
        PipelineError: the script's line that started this run is not guarded.
    """
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"
    ):
        frame = frame.f_back  # type: ignore[assignment]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if frame is None or getattr(spec, "name", "").endswith("__main__"):
        # not started from a script's top level (a notebook, a function, a test), or
        # from a package's __main__ (python -m pkg), which workers do not import
        return
    path, line = frame.f_code.co_filename, frame.f_lineno
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return
    for statement in tree.body:
        if _holds(statement, line):
            if (
                isinstance(statement, ast.If)
                and _is_main_test(statement.test)
                and any(_holds(inner, line) for inner in statement.body)
            ):
                return
            raise PipelineError(
                f"step {step!r} uses executor='process', and {path}:{line} starts the run at "
                "the top level of the script: worker processes import the script and would "
                'run it again. Put the run under `if __name__ == "__main__":`'
            )


def _holds(statement: ast.stmt, line: int) -> bool:
    return statement.lineno <= line <= (statement.end_lineno or statement.lineno)


def _is_main_test(test: ast.expr) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]
