"""What a new user hit with recipes: an old recipe without ``paths:`` gets the line to
add (and its other problems in the same pass), ``keep_input`` on a prompt node keeps
the input's fields once, and ``--dry-run`` shows what the command line put in place."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import headrace as hr
from headrace.errors import RecipeError
from headrace.sim import serve

STEPS = """
def up(item):
    return {"id": item["id"], "text": item["text"].upper()}
"""


def _folder(tmp_path: Path, recipe: str) -> Path:
    (tmp_path / "pkgsteps.py").write_text(STEPS)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": n, "text": f"text {n}"}) + "\n" for n in range(4))
    )
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    return path


def test_a_module_of_the_recipe_folder_without_paths_gets_the_line_to_add(
    tmp_path: Path,
) -> None:
    path = _folder(
        tmp_path,
        "nodes:\n  - {id: up, function: 'pkgsteps:up'}\n"
        "  - {id: keep, filter: \"up.text != ''\"}\n"
        "edges:\n  - upp -> keep\n",
    )
    with pytest.raises(RecipeError) as raised:
        hr.recipe.load(path)
    text = str(raised.value)
    assert "cannot import 'pkgsteps'" in text
    assert 'add the line paths: ["."] to r.yaml' in text
    # the recipe's other problem, in the same pass
    assert "edge upp -> keep names node 'upp', which is not defined (did you mean 'up'?)" in text
    assert len(raised.value.problems) == 2
    path.write_text('paths: ["."]\n' + path.read_text().replace("upp ->", "up ->"))
    assert hr.recipe.load(path).built.graph.order == ["up", "keep"]


def test_keep_input_on_a_prompt_node_keeps_the_input_fields_once(tmp_path: Path) -> None:
    with serve() as sim:
        path = _folder(
            tmp_path,
            f"models:\n  m: {{model: gpt-4o-mini, base_url: '{sim.url}'}}\n"
            "source: {jsonl: in.jsonl, key: id}\nsink: {jsonl: out.jsonl}\n"
            "nodes:\n  - id: answer\n    llm: {model: m, prompt: 'Say {{ text }}'}\n"
            "    keep_input: answer\n",
        )
        hr.recipe.load(path).run(run_dir=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert all(sorted(row) == ["answer", "id", "text"] for row in rows)
    assert all(isinstance(row["answer"], str) and row["answer"] for row in rows)


def test_dry_run_shows_the_overrides_and_counts_a_kept_llm_node(tmp_path: Path) -> None:
    path = _folder(
        tmp_path,
        "models:\n  m: {model: gpt-4o-mini, base_url: 'http://127.0.0.1:9/v1'}\n"
        "source: {jsonl: missing.jsonl, key: id}\nsink: {jsonl: out.jsonl}\n"
        "nodes:\n  - id: answer\n    llm: {model: m, prompt: 'Say {{ text }}'}\n"
        "    keep_input: answer\n",
    )
    given = ["--input", str(tmp_path / "in.jsonl"), "--output", "elsewhere.csv"]
    done = subprocess.run(
        [sys.executable, "-m", "headrace", "run", str(path), "--dry-run", *given],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "(in place of the recipe's), 4 items" in done.stdout
    assert "sink:   --output elsewhere.csv (in place of the recipe's)" in done.stdout
    assert "no LLM nodes" not in done.stdout
    assert "answer                 4 requests" in done.stdout
    assert not (tmp_path / "elsewhere.csv").exists()


def test_dry_run_prices_each_node_on_its_tier(tmp_path: Path) -> None:
    path = _folder(
        tmp_path,
        "models:\n  m: {model: gpt-4o-mini, base_url: 'http://127.0.0.1:9/v1'}\n"
        "source: {jsonl: in.jsonl, key: id}\nsink: {jsonl: out.jsonl}\n"
        "nodes:\n  - id: answer\n    llm: {model: m, prompt: 'Say {{ text }}'}\n",
    )

    def total(*tier: str) -> float:
        done = subprocess.run(
            [sys.executable, "-m", "headrace", "run", str(path), "--dry-run", *tier],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        found = re.search(r"total: .* \$([\d.]+)", done.stdout)
        assert found is not None, done.stdout
        return float(found[1])

    online = total()
    assert online > 0
    assert total("--tier", "batch") == pytest.approx(online / 2, abs=1e-4)
    assert total("--tier", "flex") == pytest.approx(online / 2, abs=1e-4)  # OpenAI's flex
