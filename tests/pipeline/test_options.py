"""Options are built once: a step's by StepOptions, a run's by RunOptions."""

from __future__ import annotations

import inspect
import typing

import pytest
from pydantic import BaseModel

import headrace as hr
from headrace.engine.run_options import RunOptions
from headrace.errors import PipelineError
from headrace.limits.policies import Timeout
from headrace.pipeline.decorator import step
from headrace.pipeline.options import PROCESS_CHUNK, Fallback, StepOptions
from headrace.pipeline.step import STEP_OPTIONS
from headrace.recipe.nodes import POLICIES


class Tone(BaseModel):
    tone: str


def double(x: int) -> int:
    return 2 * x


def test_hr_step_takes_exactly_the_options_and_its_typed_overloads_list_them_all() -> None:
    assert STEP_OPTIONS == StepOptions.NAMES
    for overload in typing.get_overloads(step):
        parameters = set(inspect.signature(overload).parameters)
        if "fn" not in parameters:  # the decorator-with-options forms
            assert parameters == StepOptions.NAMES, overload


def test_a_recipe_node_takes_step_options_by_their_names() -> None:
    assert set(POLICIES) <= StepOptions.NAMES


def test_values_are_normalised_once() -> None:
    fallback = hr.step(double)
    options = StepOptions.checked(
        "step 'x'", timeout="500ms", cache=True, fallback=fallback, version=2
    )
    assert isinstance(options.timeout, Timeout) and options.timeout.attempt_s == 0.5
    assert isinstance(options.cache, hr.Cache)
    assert isinstance(options.fallback, Fallback) and options.fallback.step is fallback
    assert options.version == "2"
    assert StepOptions.checked("step 'x'", cache=False).cache is None


def test_the_concurrency_default_follows_the_executor_and_batching() -> None:
    assert StepOptions.checked("s").slots == 64
    assert StepOptions.checked("s", batch=hr.Batch(8)).slots == 1
    assert StepOptions.checked("s", concurrency=3).slots == 3
    adaptive = hr.AdaptiveConcurrency(min=1, initial=2, max=9)
    assert StepOptions.checked("s", concurrency=adaptive).slots == 9
    assert StepOptions.checked("s", executor="process").call_batch is PROCESS_CHUNK


def test_replace_goes_back_to_the_new_executors_default_concurrency() -> None:
    options = StepOptions.checked("s", concurrency=5)
    assert options.replace("s", executor="thread").concurrency is None
    assert options.replace("s", executor="thread", concurrency=2).slots == 2
    assert options.replace("s", ordered=True).slots == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"concurency": 4}, "step 'x': unknown option 'concurency' (did you mean 'concurrency'?)"),
        ({"concurrency": 0}, "step 'x': concurrency must be a positive integer, got 0"),
        ({"executor": "gpu"}, "step 'x': executor must be one of async, thread, process"),
        ({"batch": 8}, "step 'x': batch must be hr.Batch("),
        ({"retry": 3}, "step 'x': retry must be hr.Retry("),
        ({"cache": "yes"}, "step 'x': cache must be True or hr.Cache(...)"),
        ({"fallback": "other"}, "step 'x': fallback must be a step or hr.Fallback(step)"),
        ({"timeout": -1}, "step 'x': "),
        ({"batch": hr.Batch(4), "rate": hr.Rate(requests=10)}, "step 'x': rate= acts on calls"),
        (
            {"executor": "process", "concurrency": hr.AdaptiveConcurrency(min=1, initial=2, max=4)},
            "step 'x': AdaptiveConcurrency moves the limit of calls made once per item",
        ),
    ],
)
def test_a_bad_option_names_the_step_and_the_option(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(PipelineError) as raised:
        StepOptions.checked("step 'x'", **values)
    assert str(raised.value).startswith(message), raised.value


def test_every_step_kind_builds_its_options_with_step_options() -> None:
    made = hr.step(double).with_options(concurrency=2, timeout="1s", executor="thread")
    assert isinstance(made.options, StepOptions)
    assert (made.options.slots, made.timeout_s) == (2, 1.0)
    client = hr.llm.Client(base_url="http://127.0.0.1:1/v1")
    llm = hr.llm.complete(client=client, model="m", prompt="{text}")
    assert isinstance(llm.options, StepOptions) and llm.options.name == llm.name
    with pytest.raises(PipelineError, match=r"step 'say': concurrency must be a positive"):
        hr.llm.complete(client=client, model="m", prompt="{text}", name="say", concurrency=0)


def test_run_and_arun_take_exactly_the_run_options_with_their_defaults() -> None:
    fields = RunOptions.defaults()
    for function in (hr.run, hr.arun):
        parameters = inspect.signature(function).parameters
        taken = {n: p.default for n, p in parameters.items() if n not in ("pipeline", "source")}
        assert taken.pop("sink") is None
        assert taken == fields, function


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"on_error": "skip"}, "on_error must be 'dead_letter' or 'raise'"),
        ({"fresh": True, "resume": True, "run_dir": "r"}, "fresh=True starts the run again"),
        ({"resume": True}, "resume=True, fresh, retry_dead, rerun, force and run_store need"),
        ({"max_dead": "lots"}, "max_dead must be a count (10) or a share"),
    ],
)
def test_bad_run_options_are_refused_before_anything_runs(
    values: dict[str, object], message: str
) -> None:
    ran: list[int] = []
    with pytest.raises(PipelineError) as raised:
        hr.run(hr.step(ran.append), [1, 2], progress=False, **values)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message), raised.value
    assert ran == []


@pytest.mark.parametrize("mode", ["new", "auto", "resume", "fresh", "retry_dead"])
def test_the_command_lines_modes_are_run_options(mode: str) -> None:
    assert RunOptions.for_mode(mode, run_dir="r").mode == mode  # type: ignore[arg-type]


def test_an_llm_steps_option_typo_names_the_nearest_option() -> None:
    client = hr.llm.Client(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(
        PipelineError, match=r"unknown option 'concurency' \(did you mean 'concurrency'"
    ):
        hr.llm.complete(client=client, model="m", prompt="{text}", concurency=2)  # type: ignore[call-arg]
    with pytest.raises(PipelineError, match="unknown option 'executor'"):
        hr.llm.transduce(Tone, client=client, model="m", executor="thread")  # type: ignore[call-arg]
    embed = hr.llm.embed(client=client, model="m")
    assert (embed.concurrency, embed.options.concurrency) == (4, 4)  # embed's own default


def test_run_options_are_grouped_and_a_flat_change_lands_in_its_group() -> None:
    options = RunOptions.of(run_dir="r", on_error="raise", progress=False, window=4)
    assert (options.durability.run_dir, options.failures.on_error) == ("r", "raise")
    assert (options.observing.progress, options.window) == (False, 4)
    changed = options.replace(fresh=True, max_dead=0)
    assert changed.durability.fresh and changed.failures.max_dead == 0
    assert changed.failures.on_error == "raise" and changed.durability.run_dir == "r"
    assert changed.flat() == {**options.flat(), "fresh": True, "max_dead": 0}
    with pytest.raises(PipelineError, match="not a run option: rundir"):
        RunOptions.of(rundir="r")
