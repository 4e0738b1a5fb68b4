"""Every code block in the README and the docs runs as written, or says why it is not run.

The blocks run in order (the README's, then each page's in the order of the
site's contents in ``mkdocs.yml``), in one scratch folder that holds a copy of the
repository's ``examples/`` (so a block may use what an earlier one wrote), with
``OPENAI_BASE_URL`` pointing at a ``headrace sim`` (as the README tells its
readers to set it). A block preceded by ``<!-- doc: not run (reason) -->`` is
skipped for that reason; a block that is a file of the repository says so with
``<!-- doc: file examples/... -->`` and must equal it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from services import free_port

from headrace.sim import serve

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
FIRST_EXAMPLE = "examples/extract/extract.py"
MARK = re.compile(r"<!-- doc: (not run|file) (.+?) -->\s*\Z")


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    text: str
    skip: str | None
    file: str | None


def blocks_of(document: str) -> list[Block]:
    text = (ROOT / document).read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        mark = MARK.search(before[-400:])
        kind, value = (mark.group(1), mark.group(2)) if mark else (None, None)
        found.append(
            Block(
                document=document,
                line=before.count("\n") + 1,
                language=match.group(1),
                text=match.group(2),
                skip=value.strip("()") if kind == "not run" else None,
                file=value if kind == "file" else None,
            )
        )
    return found


def pages_in_nav(nav: list[object]) -> list[str]:
    """The site's pages in the order of its contents."""
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += pages_in_nav(value) if isinstance(value, list) else [f"docs/{value}"]
    return pages


PAGES = pages_in_nav(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
DOCUMENTS = ["README.md", *PAGES]
BLOCKS = [block for document in DOCUMENTS for block in blocks_of(document)]


def where(block: Block) -> str:
    return f"{block.document} line {block.line}"


def test_every_page_is_in_the_site_and_the_readme_is_a_front_page() -> None:
    on_disk = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
    assert sorted(PAGES) == on_disk
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_docs_have_code_blocks_and_every_skip_gives_a_reason() -> None:
    code = [b for b in BLOCKS if b.language]
    assert len(code) >= 15
    for block in code:
        assert block.skip is None or len(block.skip) > 10, where(block)
    assert sum(b.skip is None for b in code) >= 10  # most of them run


def test_blocks_that_are_files_are_those_files() -> None:
    files = [b for b in BLOCKS if b.file is not None]
    assert files
    for block in files:
        assert block.text == (ROOT / block.file).read_text(), where(block)
    # where the first example is shown, so is the same output
    shown = {BLOCKS[BLOCKS.index(b) + 1].text for b in files if b.file == FIRST_EXAMPLE}
    assert len(shown) == 1


RUN = [d for d in DOCUMENTS if any(b.language and b.skip is None for b in blocks_of(d))]


@pytest.mark.slow
@pytest.mark.timeout(900)  # every block of the page in turn, each bounded by 240 s
@pytest.mark.parametrize("document", RUN)
def test_every_code_block_runs_as_written(tmp_path: Path, document: str) -> None:
    """A page's blocks, in order, in a scratch folder of the page's own (each page is
    run apart, so the pages spread over the test workers)."""
    # a copy, not a link: a recipe outside the project is refused, and nothing is
    # written into the repository
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("out"))
    failures = []
    with serve(process=True) as sim:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": sim.url,
            "HEADRACE_CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
            "CI": "1",
        }
        env.pop("OPENAI_API_KEY", None)
        for block in blocks_of(document):
            if not block.language or block.skip is not None or block.language == "yaml":
                continue
            if block.file is not None and block.language == "python":
                command = [sys.executable, str(ROOT / block.file)]
            elif block.language == "python":
                stem = Path(block.document).stem.replace("-", "_").lower()
                script = tmp_path / f"{stem}_line_{block.line}.py"  # a file: workers import it
                script.write_text(block.text)
                command = [sys.executable, script.name]
            elif block.language == "bash":
                command = ["bash", "-e", "-c", block.text]
            else:
                failures.append(f"{where(block)}: no way to run {block.language!r}")
                continue
            log = tmp_path / f"block-{Path(block.document).stem}-{block.line}.log"
            with log.open("w") as out:
                job = subprocess.Popen(
                    command,
                    cwd=tmp_path,
                    env=env,
                    text=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a block's background jobs end with it
                )
                try:
                    status: int | str = job.wait(timeout=240)
                except subprocess.TimeoutExpired:
                    status = "timed out after 240 s"
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.pid, signal.SIGKILL)
                    job.wait()
            if status != 0:
                output = log.read_text()[-2000:]
                failures.append(f"{where(block)} ({block.language}, {status}):\n{output}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_the_first_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The README's two commands (a sim on a free port here), and its output as shown."""
    index = next(i for i, b in enumerate(BLOCKS) if b.file == FIRST_EXAMPLE)
    shown = BLOCKS[index + 1]
    assert shown.language == ""  # the output block right after the file
    port = free_port()
    env = {**os.environ, "CI": "1", "HEADRACE_CACHE_DIR": str(tmp_path / "cache")}
    env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    sim = subprocess.Popen(
        [sys.executable, "-m", "headrace", "sim", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None and "listening" in sim.stdout.readline()
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples/extract/extract.py")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        sim.kill()
        sim.wait()
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    # what does not depend on timing: the counts, the schema and the rows
    stable = [
        line
        for line in shown.text.splitlines()
        if line.startswith(("items:", "{'package'", "package:", "topics:", "audience:", "  child"))
        or "requests, 2," in line
    ]
    assert len(stable) >= 8
    for line in stable:
        assert line in printed, line


def test_every_hr_name_the_docs_show_exists() -> None:
    """``hr.x``, ``hr.llm.x``, ``hr.models.x`` and ``hr.recipe.x`` in any page resolve."""
    import headrace as hr

    shown: set[str] = set()
    for document in DOCUMENTS:
        shown |= set(
            re.findall(r"\bhr\.((?:llm\.|models\.|recipe\.)?[A-Za-z_]\w*)", _text(document))
        )
    assert len(shown) >= 50
    missing = []
    for name in sorted(shown):
        target: object = hr
        for part in name.split("."):
            target = getattr(target, part, None)
        if target is None:
            missing.append(f"hr.{name}")
    assert not missing, missing


def _text(document: str) -> str:
    return (ROOT / document).read_text()
