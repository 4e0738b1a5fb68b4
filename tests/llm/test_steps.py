"""LLM steps against ``headrace sim``: structured output, repair, packing, streaming,
embeddings, routing and cascades."""

from __future__ import annotations

import math
from typing import Literal

import orjson
import pytest
from pydantic import BaseModel, Field
from services import run_quietly

import headrace as hr
from headrace.sim import serve


class Verdict(BaseModel):
    tone: Literal["hopeful", "somber", "combative", "neutral"]
    topics: list[str]
    confidence: float = Field(ge=0, le=1)


class Loose(BaseModel):
    note: int | None = None
    label: str = "none"


def speeches(n: int) -> list[dict[str, object]]:
    text = "speech {} on the state of the union"
    return [{"id": i, "text": text.format(i), "year": 1900 + i} for i in range(n)]


def client(url: str, **options: object) -> hr.llm.Client:
    return hr.llm.Client(base_url=url, models={"fast": "gpt-4o-mini", "smart": "gpt-4o"}, **options)  # type: ignore[arg-type]


def test_transduce_returns_validated_models_one_request_per_item() -> None:
    with serve() as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast", fields=["text"])
        result = run_quietly(tone, speeches(20))
        stats = sim.stats()
    assert result.items_out == 20 and not result.dead_letters
    assert all(isinstance(v, Verdict) for v in result.outputs)
    llm = result.metrics.step(tone.name).llm
    assert llm is not None
    assert llm.requests == stats["requests"] == 20
    assert llm.prompt_tokens == stats["prompt_tokens"]
    assert llm.completion_tokens == stats["completion_tokens"]
    price = hr.llm.PRICES["gpt-4o-mini"]
    assert llm.cost_usd == pytest.approx(price.cost(llm.prompt_tokens, llm.completion_tokens))
    assert llm.repairs == 0


def test_the_request_holds_the_chosen_fields_only_and_renders_the_same_bytes() -> None:
    tone = hr.llm.transduce(
        Verdict,
        client=client("http://127.0.0.1:9/v1"),
        model="fast",
        fields=["text"],
        instructions="Judge the tone.",
    )
    first = tone.request({"id": 1, "text": "hello", "year": 1999})
    again = tone.request({"year": 1999, "text": "hello", "id": 1})
    assert orjson.dumps(first) == orjson.dumps(again)
    assert first["messages"][1]["content"] == '{"text":"hello"}'
    assert first["messages"][0]["content"].startswith("Judge the tone.")
    assert first["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()


def test_an_invalid_answer_is_repaired_once_then_becomes_a_dead_letter() -> None:
    with serve(faults={"invalid": 1.0}) as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast")
        result = run_quietly(tone, speeches(5))
        assert sim.stats()["requests"] == 10  # each item: the answer and one repair turn
    assert result.items_dead == 5
    dead = result.dead_letters[0]
    assert dead.error_type == "StructuredOutputError"
    assert "does not match Verdict" in dead.message
    assert "after one repair turn" in dead.message
    llm = result.metrics.step(tone.name).llm
    assert llm is not None and llm.repairs == 5


def test_a_repair_turn_rescues_some_answers() -> None:
    with serve(faults={"invalid": 0.5}, seed=3) as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast")
        result = run_quietly(tone, speeches(40))
    llm = result.metrics.step(tone.name).llm
    assert llm is not None
    rescued = llm.repairs - result.items_dead
    assert rescued > 0
    assert result.items_out + result.items_dead == 40
    assert all(isinstance(v, Verdict) for v in result.outputs)


def test_allow_partial_accepts_an_answer_whose_only_failures_are_optional() -> None:
    with serve(faults={"invalid": 1.0}) as sim:
        strict = hr.llm.transduce(Loose, client=client(sim.url), model="fast", name="strict")
        partial = hr.llm.transduce(
            Loose, client=client(sim.url), model="fast", allow_partial=True, name="partial"
        )
        strict_result = run_quietly(strict, speeches(4))
        partial_result = run_quietly(partial, speeches(4))
    assert strict_result.items_dead == 4
    assert partial_result.items_out == 4
    stats = partial_result.metrics.step("partial").llm
    assert stats is not None and stats.partial == 4 and stats.repairs == 0


def test_a_record_without_a_named_field_is_a_dead_letter_naming_it() -> None:
    with serve() as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast", fields=["body"])
        result = run_quietly(tone, speeches(2))
        assert sim.stats()["requests"] == 0
    assert result.items_dead == 2
    assert "no field 'body'" in result.dead_letters[0].message


def test_templates_are_sandboxed_and_checked_where_the_step_is_defined() -> None:
    url = "http://127.0.0.1:9/v1"
    with pytest.raises(hr.PipelineError, match="does not parse"):
        hr.llm.complete(client=client(url), model="fast", prompt="{{ text ")
    with pytest.raises(hr.PipelineError, match="names starting with _ are not allowed"):
        hr.llm.complete(client=client(url), model="fast", prompt="{{ text.__class__ }}")
    with pytest.raises(hr.PipelineError, match="calls are not allowed"):
        hr.llm.complete(client=client(url), model="fast", prompt="{{ text.upper() }}")
    walk = hr.llm.complete(client=client(url), model="fast", prompt="{{ text.mro }}")
    with pytest.raises(hr.llm.PromptError, match="UndefinedError"):
        walk.request({"text": "x"})
    short = hr.llm.complete(client=client(url), model="fast", prompt="Say {text} {x.__class__}")
    assert short.request({"text": "hi"})["messages"][0]["content"] == "Say hi {x.__class__}"


def test_packing_puts_several_items_in_one_request_and_counts_the_savings() -> None:
    with serve() as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast", pack=10)
        result = run_quietly(tone, speeches(50))
        requests = sim.stats()["requests"]
    assert result.items_out == 50
    llm = result.metrics.step(tone.name).llm
    assert llm is not None
    assert requests == llm.requests == llm.packed_requests <= 10
    assert llm.packed_items == 50 and llm.solo_retries == 0
    assert llm.tokens_saved > 0


def _packed_outputs(faults: dict[str, float]) -> dict[int, Verdict]:
    with serve(faults=faults) as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast", pack=4)
        items = speeches(12)
        result = run_quietly(tone, items, ordered=True)
        assert result.items_out == 12
        llm = result.metrics.step(tone.name).llm
        assert llm is not None
        if "drop" in faults:  # every packed answer lost one item, which went again alone
            assert llm.solo_retries == llm.packed_requests
        else:
            assert llm.solo_retries == 0
    return dict(enumerate(result.outputs))


def test_a_reordered_packed_answer_is_matched_to_items_by_number() -> None:
    assert _packed_outputs({"shuffle": 1.0}) == _packed_outputs({})


def test_an_item_a_packed_answer_dropped_is_sent_again_alone() -> None:
    _packed_outputs({"drop": 1.0})


def test_streaming_records_first_token_and_gives_the_same_text() -> None:
    with serve(latency_ms=5) as sim:
        llm = client(sim.url)
        plain = hr.llm.complete(client=llm, model="fast", prompt="Summarise: {text}")
        streamed = hr.llm.complete(
            client=llm, model="fast", prompt="Summarise: {text}", stream=True, name="streamed"
        )
        first = run_quietly(plain, speeches(6), ordered=True)
        second = run_quietly(streamed, speeches(6), ordered=True)
    assert first.outputs == second.outputs
    assert all(isinstance(text, str) and text for text in first.outputs)
    stats = second.metrics.step("streamed").llm
    assert stats is not None
    assert stats.first_token.count == 6
    assert stats.completion_tokens > 0 and stats.tokens_per_s > 0


def test_embeddings_are_batched_and_split_over_the_per_request_maximum() -> None:
    with serve(embedding_dim=16) as sim:
        llm = client(sim.url, max_embedding_inputs=3)
        vectors = hr.llm.embed(
            client=llm, model="text-embedding-3-small", batch=hr.Batch(max_size=8, max_wait=1.0)
        )
        result = run_quietly(vectors, [f"text {i}" for i in range(16)], ordered=True)
        requests = sim.stats()["requests"]
    assert result.items_out == 16
    assert all(len(v) == 16 and math.isclose(sum(x * x for x in v), 1.0) for v in result.outputs)
    metrics = result.metrics.step("embed")
    assert sum(metrics.batch_sizes.values()) == 2  # two batches of 8 items ...
    assert requests == 6  # ... each split into requests of 3, 3 and 2
    assert result.outputs[0] != result.outputs[1]


def test_429s_are_retried_and_counted_once_each() -> None:
    with serve(faults={"429": 0.3}, seed=1) as sim:
        llm = client(sim.url, retry=hr.Retry(attempts=20, backoff=0.001, max_delay=0.01))
        tone = hr.llm.transduce(Verdict, client=llm, model="fast")
        result = run_quietly(tone, speeches(30))
        throttled = sim.stats()["throttled"]
    assert result.items_out == 30
    assert throttled > 0
    assert result.metrics.step(tone.name).throttled == throttled


def test_a_bad_request_is_not_retried() -> None:
    with serve() as sim:
        llm = client(sim.url)
        summary = hr.llm.complete(client=llm, model="fast", prompt="{text}", max_tokens=-1)
        result = run_quietly(summary, speeches(1))
        assert sim.stats()["requests"] == 1
    assert result.dead_letters[0].error_type == "ProviderError"
    assert "HTTP 400" in result.dead_letters[0].message


def test_complexity_routes_and_a_cascade_asks_the_big_model_only_when_needed() -> None:
    select = hr.llm.complexity(["text"])
    assert select({"text": "hello there"}) == "simple"
    assert select({"text": "Explain why the sky is blue"}) == "complex"
    assert select({"text": "def f(x):\n    return x"}) == "complex"
    assert select({"text": "x" * 2000}) == "complex"
    with serve() as sim:
        llm = client(sim.url)
        fast = hr.llm.transduce(Verdict, client=llm, model="fast", name="fast")
        smart = hr.llm.transduce(Verdict, client=llm, model="smart", name="smart")
        pipeline = hr.llm.cascade([fast, smart], accept=lambda v: v.confidence >= 0.5)
        result = run_quietly(pipeline, speeches(40))
    counts = result.metrics.step("cascade").branches
    escalated = counts.get("fast not accepted", 0)
    assert counts["answered by fast"] + counts.get("answered by smart", 0) == 40
    assert escalated == counts.get("answered by smart", 0) > 0
    assert result.metrics.step("smart").calls == escalated


def test_the_openai_sdk_and_headrace_read_the_same_answer_from_the_sim() -> None:
    import openai

    with serve() as sim:
        tone = hr.llm.transduce(Verdict, client=client(sim.url), model="fast", fields=["text"])
        record = {"text": "We shall overcome."}
        ours = run_quietly(tone, [record]).outputs[0]
        sdk = openai.OpenAI(base_url=sim.url, api_key="sim")
        body = tone.request(record)
        answer = sdk.chat.completions.parse(
            model=body["model"], messages=body["messages"], response_format=Verdict
        )
    assert answer.choices[0].message.parsed == ours


def test_the_clients_circuit_opens_and_refuses_calls_without_sending_them() -> None:
    with serve(faults={"500": 1.0}) as sim:
        circuit = hr.Circuit(failures=3, reset=60, when_open="fail")
        llm = client(sim.url, retry=hr.Retry(attempts=1), circuit=circuit)
        summary = hr.llm.complete(client=llm, model="fast", prompt="{text}", concurrency=1)
        result = run_quietly(summary, speeches(10))
        assert sim.stats()["requests"] == 3
    assert result.items_dead == 10
    assert [d.error_type for d in result.dead_letters].count("CircuitOpen") == 7
    state = result.metrics.step("complete").circuit
    assert state is not None and state.settings is circuit and state.opened == 1


def test_a_connection_is_usable_directly_and_counts_its_tokens() -> None:
    import asyncio

    async def main(url: str) -> tuple[hr.llm.Reply, list[list[float]], hr.StepMetrics]:
        metrics = hr.StepMetrics(name="direct", kind="llm")
        async with client(url).connect() as connection:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            reply = await connection.chat(body, metrics)
            vectors = await connection.embed(["a", "b"], "text-embedding-3-small", metrics)
        return reply, vectors, metrics

    with serve() as sim:
        reply, vectors, metrics = asyncio.run(main(sim.url))
    assert reply.content and reply.usage[0] > 0
    assert len(vectors) == 2
    assert metrics.llm is not None and metrics.llm.requests == 2


def test_prompt_tokens_fall_back_to_the_estimate_without_tiktoken() -> None:
    from headrace.limits.usage import estimate_tokens
    from headrace.llm import tokens

    body = {"model": "no-such-model-anywhere", "messages": [{"role": "user", "content": "x" * 40}]}
    assert tokens.counter_for("no-such-model-anywhere") is None
    assert tokens.prompt_tokens(body) == estimate_tokens(body) == 3 + 3 + 10


def test_packed_records_that_cannot_fill_the_prompt_fail_alone() -> None:
    with serve() as sim:
        tone = hr.llm.transduce(
            Verdict, client=client(sim.url), model="fast", fields=["text"], pack=4
        )
        items: list[dict[str, object]] = [{"id": i} for i in range(4)] + speeches(4)
        result = run_quietly(tone, items)
    assert result.items_dead == 4 and result.items_out == 4
    assert all("no field 'text'" in d.message for d in result.dead_letters)
