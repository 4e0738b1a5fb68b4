"""hr.Budget(shared="redis://..."): one budget for every process of a run, kept in Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from services import arun_quietly

import headrace as hr
from headrace.errors import BudgetExhausted
from headrace.limits.budget import SharedSpend, spend_for
from headrace.sim import serve


def test_two_processes_spend_from_one_budget_and_what_they_hold_counts(redis_url: str) -> None:
    budget = hr.Budget(tokens=100, shared=redis_url, key=uuid.uuid4().hex)

    async def scenario() -> tuple[float, int]:
        one, two = SharedSpend(budget, budget.key or ""), SharedSpend(budget, budget.key or "")
        await one.reserve(60, 0.0)
        await two.reserve(30, 0.0)  # 90 held by the two of them: still under 100
        await one.settle(60, 0.0, 75, 0.0)  # the call used more than it expected
        with pytest.raises(BudgetExhausted, match=r"spent \(75 so far, all workers\)"):
            await two.reserve(10, 0.0)  # 75 spent + 30 held >= 100
        await two.settle(30, 0.0, 20, 0.0)
        await one.reserve(1, 0.0)  # 95 spent, nothing held: one more call may go
        spent = await one.spent()
        await one.close()
        await two.close()
        return spent

    assert asyncio.run(scenario()) == (0.0, 95)


def test_a_session_without_a_key_has_a_budget_of_its_own(redis_url: str) -> None:
    budget = hr.Budget(usd=1.0, shared=redis_url)
    first, second = spend_for(budget), spend_for(budget)
    assert isinstance(first, SharedSpend) and isinstance(second, SharedSpend)
    assert first.key != second.key

    async def close() -> None:
        await first.close()
        await second.close()

    asyncio.run(close())


def test_a_budget_redis_does_not_answer_for_refuses_the_call_and_never_overspends() -> None:
    budget = hr.Budget(tokens=10, shared="redis://127.0.0.1:1/0", key="unreachable")

    async def scenario() -> None:
        spend = SharedSpend(budget, "unreachable")
        try:
            with pytest.raises(BudgetExhausted, match="cannot be checked: Redis at"):
                await spend.reserve(1, 0.0)
        finally:
            await spend.close()

    asyncio.run(scenario())


def test_two_runs_sharing_a_budget_stop_together_at_it(redis_url: str) -> None:
    """Two runs at once, one key: together they spend the budget once, not twice."""
    budget = hr.Budget(tokens=1200, shared=redis_url, key=uuid.uuid4().hex)
    with serve() as sim:
        llm = hr.llm.Client(base_url=sim.url)
        step = hr.llm.complete(client=llm, model="sim-chat", prompt="{text}", concurrency=2)
        records = [{"id": f"r{i}", "text": f"record number {i}"} for i in range(200)]

        async def both() -> list[hr.RunResult]:
            return list(
                await asyncio.gather(
                    *(arun_quietly(step, records, budget=budget) for _ in range(2))
                )
            )

        results = asyncio.run(both())
        stats = sim.stats()
    spent = stats["prompt_tokens"] + stats["completion_tokens"]
    per_call = spent / stats["requests"]
    assert all(r.stopped is not None and "1,200 tokens" in r.stopped for r in results)
    # calls go out while spent plus held is under the budget: at most the four calls
    # in flight (two a run) cross it, each by its error of estimate at most
    assert 1200 - 4 * per_call <= spent <= 1200 + 4 * per_call
    assert sum(r.items_out for r in results) == stats["requests"] < 400


def test_a_budget_key_needs_shared_and_shared_needs_redis() -> None:
    with pytest.raises(hr.PipelineError, match="give shared= too"):
        hr.Budget(usd=1, key="team")
    with pytest.raises(hr.PipelineError, match="takes a redis:// URL"):
        hr.Budget(usd=1, shared="postgresql://x")


def test_a_flushed_budget_is_rebuilt_from_what_each_process_spent(redis_url: str) -> None:
    """FLUSHALL half-way (a Redis restart without persistence) served 31,043 tokens
    against a budget of 20,000: each process adds what it spent and holds to the new
    record before its next call, so the budget goes on from where it was."""
    import redis

    budget = hr.Budget(tokens=100, shared=redis_url, key=uuid.uuid4().hex)

    async def scenario() -> None:
        one, two = SharedSpend(budget, budget.key or ""), SharedSpend(budget, budget.key or "")
        await one.reserve(50, 0.0)
        await one.settle(50, 0.0, 50, 0.0)  # one spent 50
        await two.reserve(20, 0.0)  # two holds 20 (a call in flight)
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(one.key)  # what FLUSHALL does to it
        finally:
            client.close()
        await one.reserve(10, 0.0)  # the record: one's 50 spent + 10 held
        assert await one.spent() == (0.0, 50)
        await two.settle(20, 0.0, 25, 0.0)  # two adds its 20 held, then settles: 75 spent
        assert await one.spent() == (0.0, 75)
        await two.reserve(20, 0.0)  # 75 spent + 10 held: still under 100
        with pytest.raises(BudgetExhausted, match=r"spent \(75 so far, all workers\)"):
            await one.reserve(1, 0.0)  # 75 spent + 30 held >= 100 (without the rebuild: 30)
        await one.close()
        await two.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("field", ["tokens", "usd", "reserved_tokens", "reserved_usd"])
@pytest.mark.parametrize("value", ["-1e6", "nan", "abc", "inf", "-inf"])
def test_a_tampered_spend_stops_the_run(redis_url: str, field: str, value: str) -> None:
    """tokens set to -1e6, nan or abc served the whole dataset against the budget."""
    import redis

    budget = hr.Budget(tokens=100, usd=1.0, shared=redis_url, key=uuid.uuid4().hex)

    async def scenario() -> None:
        spend = SharedSpend(budget, budget.key or "")
        await spend.reserve(10, 0.01)
        client = redis.Redis.from_url(redis_url)
        try:
            client.hset(spend.key, field, value)
        finally:
            client.close()
        with pytest.raises(BudgetExhausted, match=f"budget's {field} in Redis .* not a spend"):
            await spend.reserve(10, 0.01)
        await spend.close()

    asyncio.run(scenario())
