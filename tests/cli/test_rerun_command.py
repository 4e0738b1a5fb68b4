"""``headrace rerun RUN_DIR --where COND --set KEY=VALUE``: a recipe's run, its chosen
items run again with a changed setting, every other output kept."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from services import example_recipe

from headrace.sim import serve
from headrace.store import StoreLocation


@pytest.mark.slow
def test_rerun_replaces_the_chosen_outputs_with_the_changed_settings(tmp_path: Path) -> None:
    recipe, env = example_recipe(tmp_path)
    run_dir = tmp_path / "run"
    output = recipe.parent / "out" / "catalogue.jsonl"
    with serve(process=True) as sim:
        base = ["--set", f"models.reader.base_url={sim.url}"]
        first = subprocess.run(
            ["headrace", "run", str(recipe), *base, "--run-dir", str(run_dir)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        before = [json.loads(line) for line in output.read_text().splitlines()]
        requests = sim.stats()["requests"]
        chosen = [row for row in before if row["category"] == "kitchen"]
        assert chosen and len(chosen) < len(before)
        again = subprocess.run(
            [
                "headrace", "rerun", str(run_dir), "--where", "category == 'kitchen'",
                *base, "--set", "nodes.product.llm.pack=1", "--set", "nodes.product.cache=false",
            ],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        billed = sim.stats()["requests"] - requests
    after = [json.loads(line) for line in output.read_text().splitlines()]
    kept = [row for row in before if row["category"] != "kitchen"]
    assert after[: len(kept)] == kept  # every other output kept, in its order
    assert billed == len(chosen)  # pack=1: one request an item chosen, nothing else
    assert f"rerun where category == 'kitchen': {len(chosen)} items" in again.stderr
    store = StoreLocation(run_dir, None).open()
    try:
        sessions = store.sessions()
        # each entry once: the chosen replaced, not added (a new answer may be filtered)
        assert store.status().done == len(after) <= len(before)
        assert len(sessions) == 2 and sessions[1][3].startswith("rerun where")  # type: ignore[union-attr]
        assert "nodes.product.llm.pack=1" in store.definition()["pipeline"]  # type: ignore[index]
    finally:
        store.close()

    # a condition naming no field: one line, nothing changed
    bad = subprocess.run(
        ["headrace", "rerun", str(run_dir), "--where", "colour == 'red'"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "names colour, which no item has" in bad.stderr
    assert [json.loads(line) for line in output.read_text().splitlines()] == after


@pytest.mark.slow
def test_rerun_takes_the_recipe_for_its_run_in_the_default_folder(tmp_path: Path) -> None:
    recipe, env = example_recipe(tmp_path)
    with serve(process=True) as sim:
        base = ["--set", f"models.reader.base_url={sim.url}"]
        first = subprocess.run(
            ["headrace", "run", str(recipe), *base],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        again = subprocess.run(
            ["headrace", "rerun", str(recipe), "--where", "category == 'kitchen'", *base],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "rerun where category == 'kitchen'" in again.stderr
    assert (tmp_path / ".headrace" / "catalogue" / "run.sqlite").is_file()
