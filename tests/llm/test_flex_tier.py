"""The flex tier against the simulator: requests sent with ``service_tier="flex"`` and
paid at the tier that served them, capacity refusals waited out without touching the
rate limit or the circuit, the fallback online (or not), each provider's refusal, a
model without flex, the longer timeout, and what it refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from pydantic import BaseModel
from services import example_recipe, run_quietly

import headrace as hr
from headrace.errors import CapacityRefused, PipelineError
from headrace.limits.rate_state import RateState
from headrace.sim import SimServer, serve

PRICE = hr.llm.Price(input=1.0, output=2.0)
QUICK = hr.llm.FlexTier(backoff=0.001, refusals=3)
PATIENT = hr.llm.FlexTier(backoff=0.001, refusals=20)  # a fallback online is unlikely


class Verdict(BaseModel):
    tone: str
    score: int


def _records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:03d}", "text": f"record number {i}"} for i in range(n)]


def _judge(sim: SimServer, tier: Any = QUICK, **client: Any) -> Any:
    llm = hr.llm.Client(base_url=sim.url, prices={"sim-chat": PRICE}, **client)
    return hr.llm.transduce(
        Verdict,
        client=llm,
        model="sim-chat",
        instructions="Judge the tone.",
        template="Judge: {{ text }}",
        tier=tier,
    )


def _stats(result: hr.RunResult) -> hr.llm.LLMStats:
    stats = result.metrics.steps[0].llm
    assert isinstance(stats, hr.llm.LLMStats)
    return stats


def test_flex_requests_ask_for_flex_and_are_paid_at_the_flex_price() -> None:
    with serve() as sim:
        result = run_quietly(_judge(sim), _records(30))
        bill = sim.stats()
    stats = _stats(result)
    assert result.items_out == 30 and bill["flex_requests"] == 30 == stats.flex_requests
    assert stats.flex_refusals == 0 and stats.flex_fallbacks == 0
    online = PRICE.cost(stats.prompt_tokens, stats.completion_tokens)
    assert stats.online_cost_usd == pytest.approx(online)
    assert stats.cost_usd == pytest.approx(online / 2)  # OpenAI's flex: half, as batch
    assert "30 on flex, 0 refused for capacity, 0 sent online" in result.summary()
    assert result.metrics.to_dict()["steps"][0]["llm"]["flex"]["requests"] == 30


def test_capacity_refusals_are_waited_out_and_never_lower_the_rate_or_open_the_circuit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuts: list[object] = []
    original = RateState.throttled_by

    def counted(self: RateState, *args: Any) -> Any:
        cuts.append(args)
        return original(self, *args)

    monkeypatch.setattr(RateState, "throttled_by", counted)
    rate = hr.Rate(requests=60_000)
    with serve(flex_refusal_rate=0.6, seed=3) as sim:
        # 60% refused: runs of more than the circuit's 5 failures in a row are certain
        tier = hr.llm.FlexTier(backoff=0.001, refusals=12)
        result = run_quietly(_judge(sim, tier, rate=rate), _records(60))
        bill = sim.stats()
    stats = _stats(result)
    assert result.items_out == 60 and result.items_dead == 0
    assert bill["flex_refused"] == stats.flex_refusals > 30
    assert bill["throttled"] == 0 and cuts == []  # the rate limit never heard of them
    step = result.metrics.steps[0]
    assert step.throttled == 0
    assert step.circuit is not None and step.circuit.statistics().opened == 0
    assert stats.flex_requests + stats.flex_fallbacks == 60

    # the control: a real 429 does reach the rate limit
    with serve(faults={"429": 0.3}, seed=3) as sim:
        run_quietly(
            _judge(sim, hr.llm.FlexTier(), rate=rate, retry=hr.Retry(backoff=0.001)), _records(20)
        )
    assert cuts


def test_a_request_refused_too_often_goes_online_at_the_standard_price() -> None:
    with serve(flex_refusal_rate=1.0) as sim:
        result = run_quietly(_judge(sim), _records(10))
        bill = sim.stats()
    stats = _stats(result)
    assert result.items_out == 10
    assert stats.flex_refusals == 30 == bill["flex_refused"]  # 3 refusals each
    assert stats.flex_fallbacks == 10 and stats.flex_requests == 0 == bill["flex_requests"]
    assert bill["ok"] == 10  # answered once each, online
    assert stats.cost_usd == pytest.approx(PRICE.cost(stats.prompt_tokens, stats.completion_tokens))


def test_without_a_fallback_a_refused_item_is_a_dead_letter_and_the_run_ends(
    tmp_path: Path,
) -> None:
    tier = hr.llm.FlexTier(backoff=0.001, refusals=2, fallback=None)
    with serve(flex_refusal_rate=1.0) as sim:
        result = run_quietly(_judge(sim, tier), _records(5), run_dir=tmp_path / "run")
        bill = sim.stats()
    assert result.items_dead == 5 and result.items_out == 0
    assert bill["ok"] == 0 and bill["flex_refused"] == 10  # never paid for online
    letters = result.dead_letters
    assert len(letters) == 5
    assert all(d.error_type == "CapacityRefused" for d in letters)
    assert "refused 2 times for lack of flex capacity" in letters[0].message


def test_groqs_498_is_a_refusal_and_its_flex_costs_the_standard_price() -> None:
    with serve(flex_refusal_rate=0.5, flex_refusal_status=498, seed=1) as sim:
        result = run_quietly(_judge(sim, flex_api="groq"), _records(20))
        bill = sim.stats()
    stats = _stats(result)
    assert result.items_out == 20 and bill["flex_refused"] == stats.flex_refusals > 0
    # Groq's flex costs what its online tier does: every token at the standard price
    assert stats.flex_requests > 0
    assert stats.cost_usd == pytest.approx(PRICE.cost(stats.prompt_tokens, stats.completion_tokens))


def test_a_model_without_flex_fails_with_the_providers_400_and_is_not_sent_online() -> None:
    with serve(flex_models="sim-other") as sim:
        result = run_quietly(_judge(sim), _records(3))
        bill = sim.stats()
    assert result.items_dead == 3 and bill["ok"] == 0
    assert result.dead_letters[0].error_type == "ProviderError"
    assert "Flex processing is not available for model 'sim-chat'" in result.dead_letters[0].message


def test_the_flex_timeout_replaces_the_clients() -> None:
    slow = {"flex_latency_ms": 400.0}
    with serve(**slow) as sim:
        quick = hr.Retry(attempts=1)
        patient = hr.llm.FlexTier(timeout=30)
        result = run_quietly(_judge(sim, patient, timeout=0.1, retry=quick), _records(2))
        assert result.items_out == 2
        hasty = hr.llm.FlexTier(timeout=0.1)
        # no circuit: one that sees only timeouts holds the items as an outage instead
        failed = run_quietly(
            _judge(sim, hasty, timeout=30, retry=quick, circuit=False), _records(2)
        )
    assert failed.items_dead == 2 and "no answer within 0.1 s" in failed.dead_letters[0].message


def test_what_the_flex_tier_refuses() -> None:
    llm = hr.llm.Client(base_url="https://api.anthropic.com/v1", api_key_env="NO_SUCH_KEY")
    with pytest.raises(PipelineError, match="has no flex tier"):
        hr.llm.complete(client=llm, model="claude-sonnet-4-5", prompt="{text}", tier="flex")
    local = hr.llm.Client(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(PipelineError, match="the flex tier is for chat requests"):
        hr.llm.embed(client=local, model="text-embedding-3-small", tier="flex")
    with pytest.raises(PipelineError, match="FlexTier refusals must be a positive integer"):
        hr.llm.FlexTier(refusals=0)
    with pytest.raises(PipelineError, match="FlexTier fallback must be 'online' or None"):
        hr.llm.FlexTier(fallback="batch")  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="flex_api must be one of"):
        hr.llm.Client(base_url="http://127.0.0.1:9/v1", flex_api="bedrock")  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="tier must be 'online', 'flex', 'batch'"):
        hr.llm.complete(client=local, model="m", prompt="{text}", tier="priority")


def test_each_tiers_price_comes_from_the_table_then_the_providers_share() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0)

    def table(model: str, **context: str) -> float:
        return float(calc_price(usage, model, price_context=context or None).total_price)

    openai = hr.llm.Client(base_url="http://127.0.0.1:9/v1")
    # a model the table prices on flex: its flex price
    assert openai.price("gpt-5-mini", "flex").input == pytest.approx(  # type: ignore[union-attr]
        table("gpt-5-mini", service_tier="flex")
    )
    # OpenAI prices flex at batch rates: the table's batch price where it has no flex one
    assert openai.price("gpt-4o-mini", "flex").input == pytest.approx(  # type: ignore[union-attr]
        table("gpt-4o-mini", processing="batch")
    )
    assert openai.price("gpt-4o-mini", "batch") == openai.price("gpt-4o-mini", "flex")
    groq = hr.llm.Client(base_url="http://127.0.0.1:9/v1", flex_api="groq")
    assert groq.price("gpt-4o-mini", "flex") == groq.price("gpt-4o-mini")
    # the user's own price is standard: the tiers take their share of it
    mine = hr.llm.Client(base_url="http://127.0.0.1:9/v1", prices={"m": PRICE})
    assert mine.price("m", "flex") == mine.price("m", "batch") == hr.llm.Price(0.5, 1.0)
    # Anthropic's batch price is half its standard one, which the table does not say
    claude = hr.llm.Client(base_url="https://api.anthropic.com/v1", api_key_env="NO_SUCH_KEY")
    standard = claude.price("claude-sonnet-4-5")
    assert standard is not None
    assert claude.price("claude-sonnet-4-5", "batch") == hr.llm.Price(
        standard.input / 2, standard.output / 2
    )
    with pytest.raises(PipelineError, match="not 'priority'"):
        openai.price("gpt-4o-mini", "priority")


def test_capacity_refused_survives_a_trip_between_processes() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(CapacityRefused(498, "capacity exceeded")))
    assert isinstance(error, CapacityRefused) and error.http_status == 498
    assert str(error) == "HTTP 498: capacity exceeded"


def test_a_recipe_on_the_flex_tier_from_the_command_line(tmp_path: Path) -> None:
    recipe, env = example_recipe(tmp_path)
    with serve(process=True, flex_refusal_rate=0.3) as sim:
        command = ["headrace", "run", str(recipe), "--set", f"models.reader.base_url={sim.url}"]
        command += ["--run-dir", str(tmp_path / "run"), "--tier", "flex"]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        bill = sim.stats()
    assert done.returncode == 0, done.stderr
    listings = (recipe.parent / "listings.jsonl").read_text().splitlines()
    packs = -(-len(listings) // 8)
    assert bill["flex_refused"] > 0 and bill["ok"] == packs  # each pack answered once
    assert f"{bill['flex_requests']:,} on flex, {bill['flex_refused']:,} refused" in done.stdout


def test_the_simulators_flex_tier_answers_the_official_sdk_unchanged() -> None:
    import openai

    def ask(sim: SimServer, model: str = "sim-chat") -> Any:
        client = openai.OpenAI(base_url=sim.url, api_key="sim", max_retries=0)
        return client.chat.completions.create(
            model=model, service_tier="flex", messages=[{"role": "user", "content": "hi"}]
        )

    with serve(flex_models="sim-chat") as sim:
        assert ask(sim).service_tier == "flex"
        with pytest.raises(openai.BadRequestError, match="not available for model 'other'"):
            ask(sim, "other")
    with serve(flex_refusal_rate=1.0) as sim:
        with pytest.raises(openai.RateLimitError) as refused:
            ask(sim)
        assert refused.value.code == "resource_unavailable"
    with serve(flex_refusal_rate=1.0, flex_refusal_status=498) as sim:
        with pytest.raises(openai.APIStatusError) as groq:
            ask(sim)
        assert groq.value.status_code == 498 and sim.stats()["ok"] == 0


def test_the_report_shows_the_flex_requests_and_their_refusals(tmp_path: Path) -> None:
    import re

    from typer.testing import CliRunner

    from headrace.cli import app

    with serve(flex_refusal_rate=0.4, seed=5) as sim:
        result = run_quietly(_judge(sim), _records(15), run_dir=tmp_path / "run")
    stats = _stats(result)
    assert stats.flex_refusals > 0
    answer = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert answer.exit_code == 0, answer.output
    html = (tmp_path / "run" / "report.html").read_text()
    shown = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', html))
    assert shown["flex"] == (
        f"{stats.flex_requests} requests, {stats.flex_refusals} refused "
        f"(online ${stats.online_cost_usd:,.4f})"
    )


def test_a_budget_counts_flex_requests_at_the_flex_price(tmp_path: Path) -> None:
    with serve(flex_refusal_rate=0.3, seed=7) as sim:
        online = run_quietly(_judge(sim, "online"), _records(20))
        full = _stats(online).cost_usd
        # a budget of 60% of the online cost: flex (half the price) finishes, refusals
        # and all (a refusal's hold is given back unspent); online stops short
        budget = hr.Budget(usd=full * 0.6)
        flex = run_quietly(
            _judge(sim, PATIENT), _records(20), budget=budget, run_dir=tmp_path / "f"
        )
        short = run_quietly(
            _judge(sim, "online"), _records(20), budget=budget, run_dir=tmp_path / "o"
        )
    assert flex.items_out == 20 and flex.stopped is None
    assert _stats(flex).flex_refusals > 0 and _stats(flex).cost_usd <= full * 0.6
    assert short.stopped is not None and "budget" in short.stopped and short.items_out < 20


def test_a_streamed_flex_answer_is_paid_at_the_flex_price() -> None:
    with serve(flex_refusal_rate=0.3) as sim:
        llm = hr.llm.Client(base_url=sim.url, prices={"sim-chat": PRICE})
        step = hr.llm.complete(
            client=llm, model="sim-chat", prompt="{text}", stream=True, tier=PATIENT
        )
        result = run_quietly(step, _records(10))
        bill = sim.stats()
    stats = _stats(result)
    assert result.items_out == 10 and stats.first_token.count == 10
    assert stats.flex_requests == bill["flex_requests"] == 10 and stats.flex_fallbacks == 0
    assert stats.cost_usd == pytest.approx(stats.online_cost_usd / 2)
