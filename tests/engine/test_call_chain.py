"""A step's call chain is one ordered list, built in one place (engine/call.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from services import run_quietly

import headrace as hr
from headrace.engine.activity import Activity
from headrace.engine.call import call_chain
from headrace.engine.context import RunContext
from headrace.metrics import StepMetrics


def _chain(step: hr.FunctionStep[Any, Any]) -> list[str]:
    async def names() -> list[str]:
        ctx = RunContext(Activity(), asyncio.ensure_future)
        try:
            metrics = StepMetrics(name="s", kind="function")
            return [name for name, _ in call_chain(step, ctx, metrics)]
        finally:
            await ctx.aclose()
            ctx.close(aborted=False)

    return asyncio.run(names())


async def double(x: int) -> int:
    return 2 * x


def test_every_stage_in_its_place_outermost_first() -> None:
    step = hr.step(
        ordered=True,
        fallback=hr.step(double),
        cache=hr.Cache(),
        timeout=hr.Timeout(total="5s"),
        retry=hr.Retry(attempts=2),
    )(double)
    assert _chain(step) == ["entry order", "fallback", "cache", "total timeout"]


def test_a_step_with_no_policy_is_its_gate_alone() -> None:
    assert _chain(hr.step(double)) == []
    assert _chain(hr.step(timeout=hr.Timeout(total=1))(double)) == ["total timeout"]


def test_the_chain_runs_in_its_order_with_every_stage_at_work() -> None:
    """The failures the fallback answers, in entry order."""

    def odd(x: int) -> int:
        return x // (x % 2)

    def one(x: int) -> int:
        return 1

    failing = hr.step(ordered=True, fallback=hr.step(one))(odd)
    result = run_quietly(failing, range(6))
    assert result.outputs == [1, 1, 1, 3, 1, 5]  # the even ones fell back
    assert result.metrics.step("odd").fallbacks == 3 and result.items_dead == 0
