"""mypy sees the types that flow through a composition."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"


def _mypy(path: Path) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(path)]
    )
    return stdout + stderr, status


@pytest.mark.slow
def test_composition_types_are_the_ends_types() -> None:
    output, status = _mypy(HERE / "composed_types.py")
    assert status == 0, output


@pytest.mark.slow
def test_composing_mismatched_steps_is_a_type_error() -> None:
    output, status = _mypy(HERE / "composed_type_errors.py")
    assert status == 1
    assert "composed_type_errors.py:18: error: Unsupported operand types for >> " in output
    assert '("FunctionStep[str, int]" and "FunctionStep[str, str]")' in output
