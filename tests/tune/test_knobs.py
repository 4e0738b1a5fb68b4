"""What ``headrace bench`` may change on a pipeline: parsing a sweep, choosing the steps,
and setting the value in place (function, LLM and model steps)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from services import run_quietly

import headrace as hr
from headrace.errors import PipelineError
from headrace.sim import SimConfig, serve
from headrace.tune.knobs import Sweep, all_steps, point_at, tune, tuned_steps, without_caches


class Label(BaseModel):
    label: str


def llm_pipeline(client: hr.llm.Client | None = None) -> Any:
    client = client or hr.llm.Client(base_url="https://api.example.com/v1")
    label = hr.llm.transduce(Label, client=client, model="m", name="label", cache=True)
    other = hr.llm.complete(client=client, model="m", prompt="{x}", name="other")
    clean = hr.step(lambda x: {"x": x}, name="clean", executor="thread")
    return clean >> (label | other)


def test_a_sweep_parses_sorted_distinct_values() -> None:
    assert Sweep.parse("concurrency=32, 8,16,8") == Sweep("concurrency", (8, 16, 32))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("speed=1,2", "KNOB one of concurrency"),
        ("concurrency", "KNOB=V1,V2"),
        ("window=4,x", "whole numbers"),
        ("batch=8", "at least two values"),
        ("pack=0,2", "each >= 1"),
    ],
)
def test_a_bad_sweep_is_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Sweep.parse(text)


def test_without_step_names_the_llm_steps_are_swept() -> None:
    root = llm_pipeline()
    assert [s.name for s in tuned_steps(root, "concurrency", None)] == ["label", "other"]
    assert [s.name for s in tuned_steps(root, "pack", None)] == ["label"]


def test_named_steps_are_checked() -> None:
    root = llm_pipeline()
    assert [s.name for s in tuned_steps(root, "concurrency", ["clean"])] == ["clean"]
    with pytest.raises(PipelineError, match="no step named 'nope'"):
        tuned_steps(root, "concurrency", ["nope"])
    with pytest.raises(PipelineError, match="step 'clean' has no 'pack'"):
        tuned_steps(root, "pack", ["clean"])
    with pytest.raises(PipelineError, match="no step in the pipeline has a 'batch'"):
        tuned_steps(root, "batch", None)


def test_tuning_sets_the_value_the_run_will_use() -> None:
    root = llm_pipeline()
    steps = {s.name: s for s in all_steps(root)}
    tune(root, [steps["clean"]], "concurrency", 3)
    clean: Any = steps["clean"]
    assert (clean.concurrency, clean.options.concurrency, clean.executor) == (3, 3, "thread")
    label: Any = steps["label"]
    before = label.fingerprint
    tune(root, [label], "pack", 8)
    assert label.pack == 8 and label.batch.max_size == 8 and label.options.batch.max_size == 8
    assert label.fingerprint != before  # a pack changes the requests
    tune(root, [label], "concurrency", 5)
    assert (label.concurrency, label.batch.max_size) == (5, 8)
    tune(root, [label], "pack", 1)
    assert label.batch is None and label.options.batch is None


def test_batched_function_and_model_steps_take_a_batch_size() -> None:
    @hr.step(batch=hr.Batch(max_size=4, max_wait="50ms"))
    def double(xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    tune(double, [double], "batch", 16)
    assert double.batch is not None and (double.batch.max_size, double.batch.max_wait_s) == (
        16,
        0.05,
    )
    assert run_quietly(double, range(40)).outputs == [2 * x for x in range(40)]
    sentiment = hr.models.sentiment(name="vader")
    tune(sentiment, [sentiment], "batch", 7)
    assert sentiment.batch.max_size == 7
    with pytest.raises(PipelineError, match="no setting 'concurrency'"):
        tune(sentiment, [sentiment], "concurrency", 2)


def test_caches_are_turned_off() -> None:
    root = llm_pipeline()
    assert without_caches(root) == ["label"]
    assert all(getattr(s, "cache", None) is None for s in all_steps(root))


def test_fallback_steps_are_part_of_the_pipeline() -> None:
    spare = hr.step(lambda x: x, name="spare")
    main = hr.step(lambda x: x, name="main", fallback=spare)
    assert [s.name for s in all_steps(main)] == ["main", "spare"]


def test_pointing_at_a_simulator_keeps_shared_clients_shared() -> None:
    client = hr.llm.Client(base_url="https://api.example.com/v1", rate=hr.Rate(requests=10))
    root = llm_pipeline(client)
    assert point_at(root, "http://127.0.0.1:1234/v1/") == 1
    clients = {id(s.client): s.client for s in all_steps(root) if hasattr(s, "client")}
    (moved,) = clients.values()
    assert moved.base_url == "http://127.0.0.1:1234/v1" and moved.rate is client.rate
    assert moved.api_key() is None  # no key goes to the simulator
    assert client.base_url == "https://api.example.com/v1"  # the user's client is untouched


def test_a_sim_config_reads_from_text() -> None:
    config = SimConfig.from_text("rpm=6000, latency_ms=150,concurrency=4,fault_503=0.1")
    assert (config.rpm, config.latency_ms, config.concurrency) == (6000, 150, 4)
    assert config.faults == {"503": 0.1}
    for bad, words in (("speed=1", "expected NAME=VALUE"), ("rpm=x", "not a number")):
        with pytest.raises(ValueError, match=words):
            SimConfig.from_text(bad)
    with pytest.raises(ValueError, match="unknown sim fault"):
        SimConfig.from_text("fault_boom=0.1")
    with serve(SimConfig.from_text("rpm=600")) as sim:
        assert sim.stats()["requests"] == 0
