import subprocess
import sys

from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"headrace {hr.__version__}\n"


def test_info_names_python_cpus_gpus_and_optional_libraries() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == f"headrace {hr.__version__}"
    assert lines[1].startswith("python   3.")
    assert any(line.startswith("cpus     ") for line in lines)
    assert any(line.startswith("gpus     ") for line in lines)
    assert "optional libraries:" in lines


def test_the_console_script_runs_without_importing_heavy_libraries() -> None:
    code = (
        "import sys; from headrace.cli import main; sys.argv=['headrace', '--version'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'pydantic') if m in sys.modules]\n"
        "print('heavy:', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("heavy: []")


def test_ray_flags_go_with_backend_ray() -> None:
    result = runner.invoke(
        app, ["run", "examples.durable.loud:pipeline", "--input", "x.jsonl", "--num-gpus", "1"]
    )
    assert result.exit_code != 0
    assert "--num-gpus go with --backend ray" in result.output
