"""``headrace report``: one HTML file from a run's store, true to its numbers, escaped,
with no secret in it, and readable when the store is damaged."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import urllib.request
import uuid
from pathlib import Path

import pytest
from services import run_quietly
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.report.live import LivePage
from headrace.report.page import RunRecord, render_page
from headrace.store import SqliteRunStore, StoreLocation

HOSTILE = "<script>document.title='owned'</script>"


@hr.step(concurrency=4)
async def judge(x: int) -> dict[str, int]:
    await asyncio.sleep(0.001)
    if x % 50 == 7:
        raise ValueError(f"bad item {HOSTILE} {x}")
    return {"x": x}


def key_numbers(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-key="([^"]+)">([^<]*)<', html))


def test_the_report_is_one_file_with_the_runs_numbers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_quietly(judge, range(500), run_dir=run_dir)
    answer = CliRunner().invoke(app, ["report", str(run_dir)])
    assert answer.exit_code == 0, answer.output
    path = Path(answer.output.strip())
    assert path == run_dir / "report.html"
    html = path.read_text()
    numbers = key_numbers(html)
    assert numbers["finished"] == "500 of 500"
    assert numbers["done"] == f"{result.items_out:,}" == "490"
    assert numbers["dead"] == "10" and numbers["dead-judge"] == "10"
    assert numbers["state"] == "not running"
    assert "items/s (session average)" in html  # not one interval's rate
    # the sessions table: when each was last seen, what it finished, how it ended
    assert "<th>last seen</th><th>finished</th><th>outcome</th>" in html
    assert re.search(r"<td>1</td><td>[^<]+</td><td>[^<]+</td><td>500</td><td>ended</td>", html)
    assert f"headrace retry-dead {run_dir}" in html
    assert "judge: ValueError" in html  # dead letters grouped by step and cause
    assert 'data-chart="throughput"' in html and 'data-chart="latency-judge"' in html
    assert "<script" not in html  # a file report runs no script at all
    assert "&lt;script&gt;document.title=" in html  # the error's text, escaped
    assert not (run_dir / "report.html.partial").exists()


def test_no_credential_reaches_the_report(tmp_path: Path, postgres_url: str) -> None:
    secret = "hunter2-not-a-real-one"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@")
    table = f"report_{uuid.uuid4().hex[:12]}"
    sink = hr.write_sql(url, table, key="id")

    def leaky(x: int) -> dict[str, str]:
        if x == 3:  # an error whose text holds a URL with its password
            raise ConnectionError(f"cannot reach redis://:{secret}@127.0.0.1:1/0")
        return {"id": str(x)}

    run_dir = tmp_path / "run"
    run_quietly(leaky, range(20), sink=sink, run_dir=run_dir)
    html = render_page(RunRecord.load(StoreLocation(run_dir)))
    assert secret not in html
    assert "postgresql://postgres@127.0.0.1" in html  # the sink is shown, not its password
    assert "cannot reach redis://:***@127.0.0.1" in html


def test_a_run_kept_in_postgres_gets_its_report_from_there(
    tmp_path: Path, postgres_url: str, run_name: str
) -> None:
    run_dir = tmp_path / run_name
    run_quietly(judge, range(100), run_dir=run_dir, run_store=postgres_url)
    out = tmp_path / "elsewhere.html"
    try:
        answer = CliRunner().invoke(
            app, ["report", str(run_dir), "--run-store", postgres_url, "-o", str(out)]
        )
        assert answer.exit_code == 0, answer.output
        assert key_numbers(out.read_text())["finished"] == "100 of 100"
    finally:
        store = StoreLocation(run_dir, postgres_url).open()
        store.discard()
        store.close()


def test_no_run_there_is_one_line_and_a_failure(tmp_path: Path) -> None:
    answer = CliRunner().invoke(app, ["report", str(tmp_path / "none")])
    assert answer.exit_code == 1
    assert answer.output.strip() == f"error: there is no run in {tmp_path / 'none'}"
    assert not (tmp_path / "none").exists()  # looking did not make a run


def test_a_damaged_series_still_gives_a_report(tmp_path: Path) -> None:
    run_quietly(judge, range(60), run_dir=tmp_path)
    rows = [
        (1, 50, 1.0, "{broken"),
        (1, 51, 2.0, '{"wall_s": "x", "steps": [{"name": 3, "latency_hist": {"b": {"9": -1}}}]}'),
        (1, 52, 3.0, '{"wall_s": 1e308, "items": {"out": "many"}, "steps": [null]}'),
        (2, 1, 4.0, f'{{"wall_s": 1, "steps": [{{"name": "{HOSTILE}", "slots": 1, "calls": 1}}]}}'),
    ]
    with sqlite3.connect(tmp_path / SqliteRunStore.FILENAME) as db:  # behind its back
        db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", rows)
    html = render_page(RunRecord.load(StoreLocation(tmp_path)))
    assert "<script>document" not in html
    assert key_numbers(html)["finished"] == "60 of 60"


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_ui_refuses_a_port_that_is_not_one(tmp_path: Path, port: str) -> None:
    run_quietly(lambda x: x, range(3), run_dir=tmp_path)
    answer = CliRunner().invoke(app, ["ui", str(tmp_path), "--port", port])
    assert answer.exit_code == 2


def test_run_with_ui_serves_the_live_page_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("in.jsonl").write_text("".join(f'{{"id": "{i}", "n": {i}}}\n' for i in range(5)))
    flags = ["--input", "in.jsonl", "--key", "id", "--output", "out.jsonl", "--run-dir", "r"]
    answer = CliRunner().invoke(app, ["run", "first_jobs:passes", *flags, "--ui"])
    assert answer.exit_code == 0, answer.output
    assert re.search(
        r"live page: http://127\.0\.0\.1:\d+/ \(while this command runs", answer.output
    )
    assert "later: headrace ui r" in answer.output


def test_the_steps_table_of_a_resumed_run_counts_every_session(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_quietly(judge, range(500), run_dir=run_dir)
    again = run_quietly(judge, range(500), run_dir=run_dir, retry_dead=True)
    assert first.metrics.steps[0].errors == again.metrics.steps[0].errors == 10
    html = render_page(RunRecord.load(StoreLocation(run_dir)))
    row = re.search(r'<tr data-step="judge">(.*?)</tr>', html)
    assert row is not None
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    # step, kind, slots, calls, items, errors, p50, p95, p99
    assert cells[3:6] == ["490", "490", "20"]  # both sessions' errors, not the last one's
    assert float(cells[6]) > 0  # latencies of the first session's calls


def test_a_damaged_store_is_one_line_in_the_report_and_on_the_live_page(tmp_path: Path) -> None:
    run_quietly(judge, range(20), run_dir=tmp_path)
    (tmp_path / "run.sqlite").write_bytes(b"not a database" * 100)
    answer = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert answer.exit_code == 1
    assert answer.output.strip().startswith("error: the run store ")
    assert len(answer.output.strip().splitlines()) == 1
    with LivePage(StoreLocation(tmp_path)) as live:
        body = urllib.request.urlopen(live.url + "body", timeout=10).read().decode()
    assert body.startswith('<p class="error">the run store ') and "damaged" in body
