"""Files beside a recipe never shadow installed packages: the recipe's folder is
importable only when its ``paths:`` says so, and then after installed packages."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from services import run_quietly

import headrace as hr
from headrace.recipe.document import RecipeError


def test_a_package_beside_a_recipe_does_not_replace_the_installed_one(tmp_path: Path) -> None:
    """A ``pyarrow/`` beside a recipe with a Parquet sink must not run (it did)."""
    (tmp_path / "pyarrow").mkdir()
    (tmp_path / "pyarrow" / "__init__.py").write_text(
        f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\n"
    )
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "x"}\n')
    (tmp_path / "r.yaml").write_text(
        'paths: ["."]\nsource: {jsonl: in.jsonl, key: id}\nsink: {parquet: out}\n'
        "nodes:\n  - {id: same, function: json:loads, input: text}\n"
    )
    # a fresh interpreter, so pyarrow is imported because of this recipe and nothing else
    code = (
        "import headrace as hr\n"
        f"r = hr.recipe.load({str(tmp_path / 'r.yaml')!r})\n"
        "r.sink().open({})\nimport pyarrow\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert not (tmp_path / "pwned").exists(), done.stderr


def test_a_module_beside_a_recipe_loses_to_an_installed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"mypkg_{uuid.uuid4().hex[:8]}"
    installed = tmp_path / "site"
    installed.mkdir()
    (installed / f"{name}.py").write_text("def f(x):\n    return 'installed'\n")
    monkeypatch.syspath_prepend(str(installed))
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / f"{name}.py").write_text("def f(x):\n    return 'shadow'\n")
    (recipe / "r.yaml").write_text(f'paths: ["."]\nnodes:\n  - {{id: f, function: {name}:f}}\n')
    pipeline = hr.load_recipe(recipe / "r.yaml")
    assert run_quietly(pipeline, ["x"]).outputs == ["installed"]


def test_without_paths_the_recipe_folder_is_not_importable(tmp_path: Path) -> None:
    name = f"local_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "r.yaml").write_text(f"nodes:\n  - {{id: f, function: {name}:f}}\n")
    with pytest.raises(RecipeError, match=f"cannot import '{name}'"):
        hr.load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(f'paths: ["."]\nnodes:\n  - {{id: f, function: {name}:f}}\n')
    assert run_quietly(hr.load_recipe(tmp_path / "r.yaml"), [1]).outputs == [1]


def test_a_path_out_of_the_recipe_folder_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        'paths:\n  - "."\n  - "../.."\nnodes:\n  - {id: f, function: json:dumps}\n'
    )
    with pytest.raises(RecipeError) as refused:
        hr.load_recipe(tmp_path / "r.yaml")
    assert f"{tmp_path / 'r.yaml'}:3:5: paths[1]: '../..' leads out of the recipe's folder" in str(
        refused.value
    )
