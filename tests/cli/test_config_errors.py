"""Settings wrong for every item stop before anything runs, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import JOBS, run_quietly

import headrace as hr


@hr.step
def same(row: dict[str, object]) -> dict[str, object]:
    return row


def test_a_key_field_the_first_jsonl_record_lacks_stops_before_running(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n" + "".join(json.dumps({"id": n, "name": "x"}) + "\n" for n in range(20)))
    with pytest.raises(hr.SourceError) as caught:
        run_quietly(
            same,
            hr.read_jsonl(source, key="idd"),
            sink=hr.write_jsonl(tmp_path / "out.jsonl"),
            run_dir=tmp_path / "run",
        )
    assert str(caught.value) == (
        f"{source}:2: the first record has no key field 'idd' (did you mean 'id'?); "
        "its fields: 'id', 'name'"
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.jsonl").exists()


def test_a_key_field_the_first_item_of_a_list_lacks_stops_before_running() -> None:
    with pytest.raises(
        hr.SourceError, match=r"the first item has no key field 'key'; its fields: 'id'"
    ):
        hr.run(same, [{"id": 1}], key="key", run_dir=None, sink=hr.write_jsonl("/dev/null"))


def test_a_later_record_without_the_key_is_bad_input_not_a_setting(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1}\n{"other": 2}\n')
    result = run_quietly(same, hr.read_jsonl(source, key="id"), run_dir=tmp_path / "run")
    assert result.items_out == 1 and result.items_dead == 1
    assert "missing key field 'id'" in result.dead_letters[0].message


def test_the_cli_names_the_fields_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"package": "a", "version": "1"}) + "\n")
    job = subprocess.run(
        [
            sys.executable, "-c", "from headrace.cli import main; main()", "run",
            "first_jobs:passes", "--input", "in.jsonl", "--key", "Package",
            "--output", "out.jsonl", "--run-dir", "state",
        ],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(JOBS)},
        text=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert job.returncode == 1
    assert job.stderr.strip().splitlines() == [
        "error: in.jsonl:1: the first record has no key field 'Package' "
        "(did you mean 'package'?); its fields: 'package', 'version'"
    ]
    assert not (tmp_path / "state").exists()
