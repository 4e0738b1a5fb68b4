"""The report and the live page in a real headless Chromium (Debian's, which
``scripts/install --browser`` installs): no console error, every chart drawn, the numbers of
the run, a bounded size; the live page follows a run through a kill and a resume.

Screenshots are saved in each test's temporary directory (the path is printed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from browsing import open_page
from services import JOBS

import headrace as hr
from headrace.report.live import LivePage
from headrace.store import StoreLocation

pytestmark = pytest.mark.slow

MAX_BYTES = 1_000_000

JOB = str(JOBS / "slow_job.py")


def key(page: Any, name: str) -> str:
    return str(page.locator(f'[data-key="{name}"]').inner_text())


@hr.step(concurrency=4)
async def judge(x: int) -> dict[str, int]:
    await asyncio.sleep(0.008)
    if x % 100 == 7:
        raise ValueError(f"item {x} is bad")
    return {"x": x}


def test_the_report_draws_every_chart_with_the_runs_numbers(browser: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop holds this thread
        run = thread.submit(hr.run, judge, range(2500), run_dir=run_dir, progress=False)
        result = run.result()  # ~5 s: 3 rows
    from headrace.report.page import write_report

    path = write_report(StoreLocation(run_dir), run_dir / "report.html")
    assert path.stat().st_size < MAX_BYTES
    page, errors = open_page(browser, path.as_uri())
    charts = page.locator("figure.chart")
    assert charts.count() >= 3
    for i in range(charts.count()):
        chart = charts.nth(i)
        name = chart.get_attribute("data-chart")
        drawn = [
            int(p)
            for p in chart.locator("polyline.series").evaluate_all(
                "lines => lines.map(l => l.points.numberOfItems)"
            )
        ]
        assert drawn and all(n >= 2 for n in drawn[:1]), (name, drawn)
        box = chart.locator("svg").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    assert key(page, "done") == f"{result.items_out:,}"
    assert key(page, "dead") == f"{result.items_dead:,}" == "25"
    assert key(page, "finished") == "2,500 of 2,500"
    assert page.locator(".bottleneck").inner_text().startswith("judge: its 4 call slots")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert errors == []


def test_the_live_page_follows_a_run_through_a_kill_and_a_resume(
    browser: Any, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, JOB, str(run_dir), "3000"]
    with LivePage(StoreLocation(run_dir)) as live:
        page, errors = open_page(browser, live.url)  # before the run exists: it waits
        assert "Waiting for the run" in page.inner_text("main")
        job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            page.wait_for_selector('[data-key="finished"]', timeout=60_000)
            first = finished(page)
            page.wait_for_function(
                f"() => parseInt(document.querySelector('[data-key=\"finished\"]')"
                f".innerText.replace(/,/g, '')) > {first}",
                timeout=60_000,
            )  # it moves while the run goes on
            assert key(page, "state") == "running"
            os.kill(job.pid, signal.SIGKILL)
        finally:
            job.wait(timeout=30)
        killed_at = finished(page)
        resumed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert resumed.wait(timeout=120) == 0, resumed.stderr.read()  # type: ignore[union-attr]
        finally:
            if resumed.poll() is None:
                resumed.kill()
        page.wait_for_function(
            "() => document.querySelector('.where').innerText.includes('2 session(s)')"
            " && document.querySelector('[data-key=\"finished\"]').innerText"
            ".startsWith('3,000 of 3,000')",
            timeout=30_000,
        )
        assert finished(page) == 3000 >= killed_at
        assert page.locator(".mark-label", has_text="session 2").count() >= 1
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'live.png'}")
    assert errors == []


def finished(page: Any) -> int:
    return int(key(page, "finished").split(" of ")[0].replace(",", ""))
