"""Prices: the user's first, then the maintained table (genai-prices), then the
built-in one; the batch tier's price from the table, or half the standard one."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price
from services import run_quietly

import headrace as hr
from headrace.llm.price_table import table_price, table_version
from headrace.llm.tier.settings import BATCH_PRICE_SHARE
from headrace.sim import serve


def test_the_users_price_first_then_the_maintained_table_then_the_built_in_one() -> None:
    mine = hr.llm.Price(input=9.0, output=9.0)
    client = hr.llm.Client(base_url="http://127.0.0.1:9/v1", prices={"gpt-4o": mine})
    assert client.price("gpt-4o") == mine and client.price_source("gpt-4o") == "your prices"
    assert client.price("gpt-4o-mini") == hr.llm.Price(input=0.15, output=0.60)
    assert client.price_source("gpt-4o-mini") == table_version()
    # an embedding model the maintained table lacks: the built-in table answers
    assert client.price("text-embedding-3-small") == hr.llm.PRICES["text-embedding-3-small"]
    assert client.price("sim-chat") is None and client.price_source("sim-chat") == "unpriced"


def test_a_long_context_price_step_does_not_change_a_models_price() -> None:
    # the table prices requests over 200k tokens higher; a model is read at 1,000
    price = table_price("claude-sonnet-4-5", "https://api.anthropic.com/v1")
    assert price == hr.llm.Price(input=3.0, output=15.0)


def test_the_batch_tier_takes_the_tables_batch_price_where_it_has_one() -> None:
    usage = Usage(input_tokens=1000, output_tokens=1000)
    batch = calc_price(
        usage, "gpt-4o-mini", provider_id="openai", price_context={"processing": "batch"}
    ).total_price
    client = hr.llm.Client(base_url="https://api.openai.com/v1", api_key_env="NO_SUCH_KEY")
    price = client.price("gpt-4o-mini", "batch")
    assert price is not None and price.cost(1000, 1000) == pytest.approx(float(batch))
    standard = client.price("gpt-4o-mini")
    assert standard is not None  # OpenAI's batch is half price, as the overlay says
    assert price.cost(1000, 1000) == pytest.approx(standard.cost(1000, 1000) * BATCH_PRICE_SHARE)


def test_the_summary_names_where_the_price_came_from() -> None:
    with serve() as sim:
        client = hr.llm.Client(base_url=sim.url)
        step = hr.llm.complete(client=client, model="gpt-4o-mini", prompt="{text}")
        result = run_quietly(step, [{"text": "hello"}])
    line = result.summary()
    assert f"({table_version()})" in line
    stats = result.metrics.steps[0].llm
    assert stats is not None
    assert stats.cost_usd == pytest.approx(
        (stats.prompt_tokens * 0.15 + stats.completion_tokens * 0.60) / 1e6
    )
