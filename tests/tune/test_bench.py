"""``headrace bench``: one run per value against a simulator, the knee, the table, the
files and the page, and the command's errors."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from headrace.cli import app
from headrace.io.records import KeyedSource
from headrace.sim import SimConfig
from headrace.tune.bench import BenchPoint, BenchResult, bench
from headrace.tune.knobs import Sweep

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import tune_job  # noqa: E402


def point(value: int, per_s: float, p95: float = 100.0, throttled: int = 0) -> BenchPoint:
    return BenchPoint(value, 10, 0, 2.0, per_s, 50.0, p95, throttled, throttled, 0.0)


def test_the_knee_is_the_smallest_value_near_the_best() -> None:
    result = BenchResult("concurrency", ["tone"])
    result.points = [point(8, 40), point(16, 80), point(32, 95), point(64, 100, 300, 50)]
    assert result.knee() is result.points[2]
    verdict = result.verdict()
    assert "knee at concurrency=32: 95.0 items/s, 95% of the best (concurrency=64)" in verdict
    assert "at 64: throughput +5%, p95 latency 100 -> 300 ms, 429s 0 -> 50" in verdict
    table = result.table().splitlines()
    assert table[3].endswith("<- knee") and table[3].split()[0] == "32"
    assert len(table) == 5


def test_a_knee_at_the_last_value_says_to_go_higher_and_short_points_are_flagged() -> None:
    result = BenchResult("window", [])
    result.points = [point(8, 10), BenchPoint(16, 10, 0, 0.2, 20.0, 1, 1, 0, 0, 0.0)]
    assert result.knee() is result.points[1]
    assert "still rising: try window above 16" in result.verdict()
    assert "a larger --limit measures the steady rate" in result.verdict()
    assert BenchResult("batch", []).verdict() == "nothing measured"


def test_a_knee_inside_the_noise_is_not_named() -> None:
    result = BenchResult("pack", ["tone"])
    result.points = [
        BenchPoint(4, 10, 0, 2.0, 70.0, 1, 1, 0, 0, 0.0, low=60.0, high=95.0, runs=3),
        BenchPoint(8, 10, 0, 2.0, 90.0, 1, 1, 0, 0, 0.0, low=80.0, high=99.0, runs=3),
        BenchPoint(16, 10, 0, 2.0, 92.0, 1, 1, 0, 0, 0.0, low=85.0, high=98.0, runs=3),
    ]
    verdict = result.verdict()
    assert verdict.startswith("no knee outside the noise: pack=4 (60.0-95.0 items/s)")
    apart = BenchPoint(4, 10, 0, 2.0, 40.0, 1, 1, 0, 0, 0.0, low=35.0, high=45.0, runs=3)
    result.points[0] = apart
    named = result.verdict()
    assert named.startswith("knee at pack=8: 90.0 items/s")
    assert "(medians of 3 runs a point)" in named
    assert "35.0-45.0" in result.table().splitlines()[1]


def records(n: int) -> KeyedSource:
    return KeyedSource(range(n), key=None)


def test_a_sweep_runs_each_value_against_a_fresh_simulator() -> None:
    """The sim serves 2 requests at once and answers more with 429 (the client does not
    retry): at concurrency 1 nothing is throttled, at 8 some items are, every point
    runs every record, and the simulator's counters start again at each point."""
    root = tune_job.as_record >> tune_job.label.named("label")
    config = SimConfig(concurrency=2, latency_ms=30)
    result = asyncio.run(bench(root, records(24), Sweep("concurrency", (1, 8)), sim=config))
    low, high = result.points
    assert (low.value, low.items, low.dead, low.throttled) == (1, 24, 0, 0)
    assert low.runs == high.runs == 3 and low.lowest <= low.items_per_s <= low.highest
    assert low.pace == "label"  # the step whose call slots were busiest
    assert high.value == 8 and high.items + high.dead == 24
    assert high.throttled > 0 and high.dead == high.throttled
    assert result.steps == ["label"] and result.items == 24
    assert result.sim == {"latency_ms": 30, "concurrency": 2}
    assert low.p50_ms >= 30  # the simulator's latency, from the step's requests


def test_a_window_sweep_changes_only_the_run() -> None:
    seen: list[int] = []
    result = asyncio.run(
        bench(
            tune_job.nap,
            records(30),
            Sweep("window", (1, 4)),
            on_point=lambda p: seen.append(p.value),
        )
    )
    assert seen == [1, 4] and [p.items for p in result.points] == [30, 30]
    assert result.steps == [] and tune_job.nap.concurrency == 8


def test_bench_from_the_command_line_writes_the_table_json_and_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "tune_job")  # bench changes the pipeline it loads
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(20)))
    out = tmp_path / "bench"
    args = ["bench", "tune_job:calls", "--input", str(sample), "--key", "id", "--limit", "12"]
    args += ["--sweep", "concurrency=1,2", "--sim", "latency_ms=5", "--out", str(out)]
    answer = CliRunner().invoke(app, args, catch_exceptions=False)
    assert answer.exit_code == 0, answer.output
    assert "concurrency: 1, 2 (12 records a point at most, 3 run(s) each)" in answer.output
    # the verdict reads measured throughput: on a loaded machine the two points may overlap
    assert "knee at concurrency=" in answer.output or "no knee outside the noise" in answer.output
    data = json.loads((out / "bench.json").read_text())
    assert data["knob"] == "concurrency" and data["steps"] == ["label"]
    assert [p["items"] for p in data["points"]] == [12, 12]  # --limit 12 of 20
    assert not list(out.glob("*.partial"))  # each file written whole, then renamed
    page = (out / "report.html").read_text()
    for chart in ("throughput", "latency", "throttled"):
        assert f'data-chart="{chart}"' in page
    assert page.count('data-points="2"') == 5  # items/s, p50, p95, 429s, retries


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--sweep", "speed=1,2"], "KNOB one of"),
        (["--sweep", "concurrency=1,2", "--step", "nope"], "no step named 'nope'"),
        (["--sweep", "concurrency=1,2", "--sim", "rpm=fast"], "not a number"),
        (["--sweep", "batch=1,2"], "no step in the pipeline has a 'batch'"),
    ],
)
def test_bench_errors_are_one_line(tmp_path: Path, extra: list[str], words: str) -> None:
    sample = tmp_path / "sample.jsonl"
    sample.write_text('{"id": 1}\n')
    answer = CliRunner().invoke(
        app, ["bench", "tune_job:calls", "--input", str(sample), *extra, "--out", str(tmp_path)]
    )
    assert answer.exit_code != 0
    assert words in answer.output
    assert "Traceback" not in answer.output
    assert not (tmp_path / "bench.json").exists()


def test_a_module_pipeline_needs_an_input() -> None:
    answer = CliRunner().invoke(app, ["bench", "tune_job:calls", "--sweep", "window=1,2"])
    assert answer.exit_code == 2 and "needs --input" in answer.output


@pytest.mark.slow
def test_the_bench_page_draws_in_chromium(browser: Any, tmp_path: Path) -> None:
    result = BenchResult("concurrency", ["tone"], items=10)
    result.points = [point(8, 40), point(16, 80), point(32, 95)]
    _, page_path = result.write(tmp_path, "mod:pipeline")
    from browsing import open_page

    page, errors = open_page(browser, page_path.as_uri())
    counts = page.eval_on_selector_all(
        "polyline.series", "lines => lines.map(l => l.points.numberOfItems)"
    )
    assert counts == [3, 3, 3, 3, 3]
    assert "knee at concurrency=32" in page.inner_text("main")
    page.screenshot(path=str(tmp_path / "bench.png"), full_page=True)
    assert errors == []
