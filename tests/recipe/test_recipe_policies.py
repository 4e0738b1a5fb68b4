"""Recipe policy sections mirror the Python objects; LLM steps take retry= and cache=."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.recipe.policy_specs import BatchSpec, CacheSpec, RateSpec, RetrySpec, TimeoutSpec
from headrace.sim import serve


@pytest.mark.parametrize(
    ("section", "python", "extra"),
    [
        (RetrySpec, hr.Retry, set()),
        (RateSpec, hr.Rate, {"auto"}),  # auto is Rate.auto()
        (TimeoutSpec, hr.Timeout, set()),
        (CacheSpec, hr.Cache, set()),
        (BatchSpec, hr.Batch, set()),
    ],
)
def test_each_policy_section_takes_the_python_objects_keyword_arguments(
    section: type[BaseModel], python: type, extra: set[str]
) -> None:
    parameters = set(inspect.signature(python).parameters) - {"self"}
    assert set(section.model_fields) - extra <= parameters


class Label(BaseModel):
    label: str


def test_an_llm_step_with_cache_makes_no_request_on_a_warm_run(tmp_path: Path) -> None:
    records = [{"id": i, "text": f"item {i}"} for i in range(10)]
    with serve() as sim:
        client = hr.llm.Client(base_url=sim.url)
        cache = hr.Cache(["memory", "sqlite"], path=tmp_path / "cache.sqlite")

        def step(instructions: str) -> hr.llm.Transduce[Label]:
            return hr.llm.transduce(
                Label, client=client, model="m", instructions=instructions, cache=cache
            )

        cold = run_quietly(step("Label it."), records, ordered=True)
        after_cold = sim.stats()["requests"]
        warm = run_quietly(step("Label it."), records, ordered=True)
        after_warm = sim.stats()["requests"]
        run_quietly(step("Label it differently."), records)
        after_change = sim.stats()["requests"]
    assert after_cold == 10 and after_warm == 10 and after_change == 20
    assert warm.outputs == cold.outputs
    assert warm.metrics.step("transduce(Label)").cache is not None


def test_an_llm_steps_own_retry_replaces_the_clients() -> None:
    with serve(faults={"503": 1.0}) as sim:
        client = hr.llm.Client(base_url=sim.url, retry=hr.Retry(attempts=1), circuit=False)
        own = hr.llm.complete(
            client=client,
            model="m",
            prompt="{text}",
            retry=hr.Retry(attempts=3, backoff="1ms", budget=None),
        )
        result = run_quietly(own, [{"text": "x"}])
        requests = sim.stats()["requests"]
    assert result.items_dead == 1 and requests == 3


def test_a_learned_rate_in_a_recipe_can_be_shared_and_refuses_a_burst() -> None:
    from headrace.recipe.nodes import NodeBuilder
    from headrace.recipe.policy_specs import RateSpec

    spec = RateSpec.model_validate({"auto": True, "shared": "redis://127.0.0.1:6379/0", "key": "k"})
    rate = NodeBuilder.rate(spec)
    assert rate is not None and rate.learns and rate.shared == "redis://127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="without burst"):
        RateSpec.model_validate({"auto": True, "burst": 5})


def test_cache_false_turns_a_nodes_cache_off(tmp_path: Path) -> None:
    """``cache: false`` (or ``--set nodes.x.cache=false``) is the option off, not a node
    that silently fails to build (it was: "edge x -> y names node 'x', which is not
    defined")."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nsource: {jsonl: in.jsonl}\nnodes:\n"
        "  - {id: double, function: operator:neg, cache: false}\n"
        "  - {id: again, function: operator:neg}\n"
    )
    pipeline = hr.load_recipe(recipe)
    assert [step.name for step in pipeline.steps] == ["double", "again"]
    assert run_quietly(pipeline, [1, 2]).outputs == [1, 2]
