"""Small things a new user tripped on: info, sim --help, status, the demo's folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from services import run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.sim.config import FAULTS
from headrace.store.session import pipeline_words

runner = CliRunner()
ROOT = Path(__file__).parents[2]


def test_info_does_not_ask_for_a_library_nothing_uses() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "sqlalchemy" not in result.output
    assert "postgresql" in result.output and "SQLite" in result.output


def test_sim_help_lists_every_fault_it_accepts() -> None:
    result = runner.invoke(app, ["sim", "--help"])
    words = " ".join(result.output.replace("│", " ").split())  # the help is wrapped in a box
    assert "kinds: " + " ".join(FAULTS) in words


def test_status_shows_a_recipe_in_words_and_marks_forced_sessions(tmp_path: Path) -> None:
    ref = "recipe:" + json.dumps(
        {"path": "sotu.yaml", "set": ["run.concurrency=4"], "allow": None, "allow_paths": []}
    )
    assert pipeline_words(ref) == "recipe sotu.yaml --set run.concurrency=4"
    assert pipeline_words("recipe:{broken") == "recipe:{broken"  # read back: untrusted
    assert pipeline_words("mymod:pipeline") == "mymod:pipeline"

    @hr.step(name="s", version="1")
    def first(x: int) -> int:
        return x

    @hr.step(name="s", version="2")
    def second(x: int) -> int:
        return x

    run_quietly(first, range(3), run_dir=tmp_path / "run")
    run_quietly(second, range(3), run_dir=tmp_path / "run", force=True)
    result = runner.invoke(app, ["status", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    forced = [line for line in result.output.splitlines() if line.startswith("forced")]
    assert len(forced) == 1
    assert forced[0].startswith("forced    session 2: pipeline fingerprint changed")
    assert "step 's': version '1' then, '2' now" in forced[0]


def test_the_demo_folder_is_ignored_by_git() -> None:
    checked = subprocess.run(
        ["git", "check-ignore", "-q", "headrace-demo/paragraphs/part-0.parquet"], cwd=ROOT
    )
    assert checked.returncode == 0
