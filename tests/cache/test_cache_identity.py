"""A cache entry's identity does not depend on how the file was run: ``python enrich.py``
(module ``__main__``) and ``headrace run enrich:pipeline`` (module ``enrich``) share
entries, typed outputs included."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

from headrace.cache.envelope import Declared, decode, encode
from headrace.cache.keys import canonical

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from pathlib import Path

from pydantic import BaseModel

import headrace as hr

HERE = Path(__file__).parent


class Summary(BaseModel):
    text: str
    words: int


@hr.step(cache=hr.Cache(["sqlite"], path=HERE / "cache.sqlite"), name="summarise")
def summarise(item: dict) -> Summary:
    with (HERE / "calls.txt").open("a") as calls:
        calls.write(str(item["id"]) + "\\n")
    return Summary(text=item["text"].upper(), words=len(item["text"].split()))


pipeline = summarise

if __name__ == "__main__":
    hr.run(
        pipeline,
        hr.read_jsonl(HERE / "in.jsonl", key="id"),
        sink=hr.write_jsonl(HERE / "script.jsonl"),
        run_dir=HERE / "script-run",
        progress=False,
    )
"""


CLI_OPTIONS = ["--input", "in.jsonl", "--output", "cli.jsonl", "--run-dir", "cli", "--key", "id"]


def _calls(folder: Path) -> int:
    path = folder / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_script_and_the_cli_read_each_others_entries(tmp_path: Path) -> None:
    (tmp_path / "enrich.py").write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": f"word {i} and more"}) + "\n" for i in range(30))
    )
    script = subprocess.run(
        [sys.executable, "enrich.py"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert script.returncode == 0, script.stderr
    assert _calls(tmp_path) == 30
    cli = subprocess.run(
        [sys.executable, "-m", "headrace", "run", "enrich:pipeline", *CLI_OPTIONS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert _calls(tmp_path) == 30  # every item came from the script's entries
    script_rows = sorted((tmp_path / "script.jsonl").read_text().splitlines())
    assert sorted((tmp_path / "cli.jsonl").read_text().splitlines()) == script_rows


def _twin(module: str) -> tuple[type, type]:
    """A Pydantic model and a dataclass of the same name, defined in ``module``."""
    namespace = types.ModuleType(module)

    class Summary(BaseModel):
        text: str

    @dataclasses.dataclass
    class Note:
        text: str

    for kind in (Summary, Note):
        kind.__module__ = namespace.__name__
    return Summary, Note


def test_entries_and_keys_name_a_class_without_its_module() -> None:
    main_model, main_note = _twin("__main__")
    import_model, import_note = _twin("enrich")
    values = [main_model(text="a"), main_note(text="b")]
    written = encode(values, Declared(list[main_model | main_note]))
    read = decode(written, Declared(list[import_model | import_note]))
    assert read == [import_model(text="a"), import_note(text="b")]
    assert canonical(main_model(text="a")) == canonical(import_model(text="a"))
    assert canonical(main_note(text="b")) == canonical(import_note(text="b"))


def test_an_entry_named_the_older_way_still_reads() -> None:
    model, _ = _twin("enrich")
    old = json.dumps({"t": "model", "c": "enrich:_twin.<locals>.Summary", "v": {"text": "a"}})
    assert decode(old.encode(), Declared(model)) == model(text="a")


def test_a_class_with_other_fields_is_not_read_as_the_declared_one() -> None:
    model, _ = _twin("enrich")

    class Summary(BaseModel):  # same name, other fields
        title: str

    written = encode(Summary(title="x"), Declared(Summary))
    with pytest.raises(LookupError):
        decode(written, Declared(model))
