"""Budgets stop a run cleanly and a resume finishes it; API keys never show."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.llm.secrets import load_secret, redact
from headrace.sim import serve


class Label(BaseModel):
    label: str


def records(n: int) -> list[dict[str, object]]:
    return [{"id": f"r{i}", "text": f"record number {i}"} for i in range(n)]


def test_a_token_budget_stops_issuing_calls_at_the_right_count() -> None:
    with serve() as sim:
        llm = hr.llm.Client(base_url=sim.url)
        step = hr.llm.transduce(Label, client=llm, model="sim-chat", concurrency=1)
        result = run_quietly(step, records(30), budget=hr.Budget(tokens=600))
        requests = sim.stats()["requests"]
    stats = result.metrics.step(step.name).llm
    assert stats is not None
    spent = stats.prompt_tokens + stats.completion_tokens
    # one call at a time: calls go out while less than the budget is spent, so the
    # last call crosses it and the one before did not
    per_call = spent / requests
    assert spent >= 600 > spent - 2 * per_call
    assert result.items_out == requests < 30
    assert result.items_unfinished >= 1
    assert result.items_in == result.items_out + result.items_unfinished
    assert result.stopped is not None and "600 tokens" in result.stopped
    assert "stopped early" in result.summary()


def test_a_run_stopped_by_its_budget_resumes_and_each_key_lands_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records(40)))
    out = tmp_path / "out.jsonl"
    run_dir = tmp_path / "run"
    with serve() as sim:
        prices = {"sim-chat": hr.llm.Price(input=10.0, output=10.0)}
        llm = hr.llm.Client(base_url=sim.url, prices=prices)
        step = hr.llm.transduce(Label, client=llm, model="sim-chat", concurrency=4)

        def run(**options: object) -> hr.RunResult:
            return hr.run(
                step,
                hr.read_jsonl(source, key="id"),
                sink=hr.write_jsonl(out),
                run_dir=run_dir,
                progress=False,
                **options,  # type: ignore[arg-type]
            )

        first = run(budget=hr.Budget(usd=0.004))
        assert first.stopped is not None and first.items_out < 40
        calls_before = sim.stats()["requests"]
        second = run(resume=True)
        calls_after = sim.stats()["requests"]
    assert second.stopped is None
    assert second.metrics.items_skipped == first.items_out
    assert calls_after - calls_before == 40 - first.items_out  # nothing computed twice
    lines = out.read_text().splitlines()
    assert len(lines) == 40  # one line per key: none lost, none written twice
    assert all(json.loads(line)["label"] for line in lines)


def test_a_dollar_budget_needs_a_price_for_every_model() -> None:
    with serve() as sim:
        step = hr.llm.transduce(Label, client=hr.llm.Client(base_url=sim.url), model="unpriced")
        with pytest.raises(hr.PipelineError, match="has no price"):
            run_quietly(step, records(1), budget=hr.Budget(usd=1))


def test_a_remote_endpoint_without_a_key_is_refused_before_any_item_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("HEADRACE_SECRETS_FILE", raising=False)
    llm = hr.llm.Client(base_url="https://api.example.com/v1")
    step = hr.llm.complete(client=llm, model="m", prompt="{text}")
    with pytest.raises(hr.PipelineError, match="set the environment variable OPENAI_API_KEY"):
        run_quietly(step, records(1))


def test_the_key_comes_from_a_secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    secrets = tmp_path / ".env"
    secrets.write_text("# keys\nOTHER=1\nexport MY_KEY='sk-from-file-123456'\n")
    secret = load_secret("MY_KEY", secrets)
    assert secret is not None and secret.reveal() == "sk-from-file-123456"
    assert repr(secret) == "Secret('***')" and str(secret) == "***"
    secrets.write_text("not a pair\n")
    with pytest.raises(hr.PipelineError, match=r"\.env:1: expected NAME=value"):
        load_secret("MY_KEY", secrets)


def test_redact_hides_the_key_and_key_shaped_text() -> None:
    secret = hr.llm.Secret("abcdef0123456789")
    text = "bad key abcdef0123456789; also sk-proj-ZZZZZZZZZZ and Bearer qwertyuiop"
    shown = redact(text, secret)
    assert "abcdef0123456789" not in shown and "ZZZZZZZZZZ" not in shown
    assert "qwertyuiop" not in shown


def test_the_api_key_never_reaches_logs_errors_metrics_or_the_run_store(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = "sk-headrace-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    with serve(faults={"500": 0.5, "invalid": 0.3}, seed=2) as sim:
        llm = hr.llm.Client(
            base_url=sim.url, retry=hr.Retry(attempts=2, backoff=0.001), circuit=False
        )
        step = hr.llm.transduce(Label, client=llm, model="sim-chat")
        result = hr.run(step, records(20), progress=True, run_dir=tmp_path / "run")
    assert result.items_dead > 0  # errors were raised and stored
    seen = [
        result.summary(),
        result.metrics.to_json(),
        repr(result.dead_letters),
        repr(llm),
        caplog.text,
        *capsys.readouterr(),
    ]
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("utf-8", "replace"))
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'"):
            seen.append(repr(db.execute(f"select * from {table}").fetchall()))
    assert all(key not in text for text in seen)
