import asyncio
from typing import Any

import pytest

import headrace as hr
from headrace import PipelineError


def run(pipeline: Any, items: list[Any], **options: Any) -> hr.RunResult:
    return hr.run(pipeline, items, progress=False, **options)


@hr.step
def inc(x: int) -> int:
    return x + 1


@hr.step
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def test_sequence_runs_left_to_right_and_flattens() -> None:
    pipeline = inc >> double >> inc
    assert isinstance(pipeline, hr.Sequence)
    assert len(pipeline.steps) == 3
    assert run(pipeline, [1, 2], ordered=True).outputs == [5, 7]


def test_plain_callables_are_wrapped_on_either_side() -> None:
    pipeline = (lambda x: x * 10) >> inc >> str
    assert run(pipeline, [1], ordered=True).outputs == ["11"]


def test_composing_a_non_callable_names_the_step_before_it() -> None:
    with pytest.raises(PipelineError) as caught:
        inc >> 42  # type: ignore[operator]
    assert str(caught.value) == (
        "cannot compose 42 (int) after step 'inc': expected a step (made with @hr.step) "
        "or a callable"
    )


def test_fan_out_runs_every_branch_on_the_same_item_and_flattens() -> None:
    pipeline = inc | double | (lambda x: -x)
    assert isinstance(pipeline, hr.Parallel) and len(pipeline.branches) == 3
    [out] = run(pipeline, [3]).outputs
    assert out == (4, 6, -3)
    assert out.names == ("inc", "double", "lambda")


def test_merge_names_branch_outputs() -> None:
    pipeline = inc >> (inc | double) >> hr.merge()
    assert run(pipeline, [1]).outputs == [{"inc": 3, "double": 4}]


def test_merge_must_follow_a_fan_out() -> None:
    with pytest.raises(PipelineError) as caught:
        inc >> hr.merge()
    assert str(caught.value) == (
        "merge() must directly follow a fan-out (a | b), but it follows step 'inc'"
    )
    with pytest.raises(PipelineError, match="follows the start of the pipeline"):
        run(hr.merge() >> inc, [1])


def test_merge_refuses_duplicate_branch_names_and_renaming_fixes_it() -> None:
    with pytest.raises(PipelineError, match=r"has \['inc'\] more than once"):
        (inc | inc) >> hr.merge()
    pipeline = (inc | inc.named("inc2")) >> hr.merge()
    assert run(pipeline, [1]).outputs == [{"inc": 2, "inc2": 2}]


def test_named_parallel_yields_a_dict() -> None:
    pipeline = hr.parallel(plus=inc, times=double)
    assert run(pipeline, [5]).outputs == [{"plus": 6, "times": 10}]


def test_a_failing_branch_fails_the_item_and_cancels_its_siblings() -> None:
    finished: list[str] = []

    @hr.step
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        finished.append("slow")
        return x

    @hr.step
    async def boom(x: int) -> int:
        raise ValueError("no")

    result = run(slow | boom, [1])
    assert [d.step for d in result.dead_letters] == ["boom"]
    assert finished == []


def test_a_branch_that_drops_the_item_drops_it() -> None:
    pipeline = inc | hr.filter(lambda x: x > 1)
    result = run(pipeline, [1, 2])
    assert result.outputs == [(3, 2)]
    assert result.items_filtered == 1


def test_route_sends_each_item_down_its_branch_and_counts_branches() -> None:
    pipeline = hr.route(lambda x: "even" if x % 2 == 0 else "odd", {"even": double, "odd": inc})
    result = run(pipeline, [1, 2, 3, 4], ordered=True)
    assert result.outputs == [2, 4, 4, 8]
    assert result.metrics.step("route").branches == {"even": 2, "odd": 2}


def test_route_without_a_matching_branch_uses_default_or_fails_the_item() -> None:
    with_default = hr.route(lambda x: x, {1: inc}, default=double)
    assert run(with_default, [1, 5], ordered=True).outputs == [2, 10]
    without = hr.route(lambda x: x, {1: inc})
    [dead] = run(without, [7]).dead_letters
    assert (dead.step, dead.error_type) == ("route", "NoRoute")
    assert dead.message == "selector chose 7, which is not a branch (['1']) and there is no default"


def test_map_applies_a_step_to_each_element_in_order() -> None:
    @hr.step
    async def jittered(x: int) -> int:
        await asyncio.sleep((5 - x) * 0.001)
        return x * 10

    pipeline = hr.map(jittered, concurrency=4)
    assert run(pipeline, [[1, 2, 3, 4, 5], [], [9]], ordered=True).outputs == [
        [10, 20, 30, 40, 50],
        [],
        [90],
    ]


def test_map_drops_filtered_elements_and_fails_on_a_failed_one() -> None:
    keep_odd = hr.map(hr.filter(lambda x: x % 2))
    assert run(keep_odd, [[1, 2, 3]]).outputs == [[1, 3]]

    def fragile(x: int) -> int:
        if x == 3:
            raise KeyError(x)
        return x

    [dead] = run(hr.map(fragile), [[1, 2, 3]]).dead_letters
    assert (dead.step, dead.error_type) == ("fragile", "KeyError")
    assert dead.message == "3 (in element 2 of map(fragile))"


def test_map_over_a_non_iterable_is_a_dead_letter() -> None:
    [dead] = run(hr.map(inc), [5]).dead_letters
    assert (dead.step, dead.error_type) == ("map(inc)", "TypeError")


def test_filter_accepts_async_predicates_and_counts_drops() -> None:
    async def positive(x: int) -> bool:
        return x > 0

    result = run(hr.filter(positive), [-1, 0, 1, 2])
    assert sorted(result.outputs) == [1, 2]
    assert result.metrics.step("positive").filtered == 2


def test_steps_can_return_filtered_to_drop_items() -> None:
    def only_small(x: int) -> Any:
        return x if x < 3 else hr.FILTERED

    result = run(only_small, list(range(5)))
    assert (result.items_out, result.items_filtered) == (3, 2)


def test_compositions_nest_freely() -> None:
    inner = inc >> (double | inc) >> hr.merge()
    pipeline = hr.map(inner) >> (lambda xs: sum(d["double"] for d in xs))
    assert run(pipeline, [[1, 2]]).outputs == [4 + 6]
