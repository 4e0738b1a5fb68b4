"""The simulator's batch endpoints, through the official SDKs unchanged: OpenAI's
files and batches, Anthropic's message batches, and their faults."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import anthropic
import openai
import pytest

from headrace.sim import serve


def _wait(until: Any, what: str) -> Any:
    """Poll ``until()`` until it returns something (a batch ends after its turnaround)."""
    for _ in range(600):
        found = until()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


def _jsonl(n: int, tag: str = "x", model: str = "sim-chat") -> bytes:
    rows = [
        {
            "custom_id": f"{tag}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"{tag} {i}"}]},
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _openai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="sim", max_retries=0)


def test_an_openai_batch_is_uploaded_created_listed_and_read_back_with_the_sdk() -> None:
    with serve(batch_turnaround_s=0.3) as sim:
        client = _openai(sim.url)
        upload = client.files.create(
            file=("in.jsonl", io.BytesIO(_jsonl(5))),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
        assert upload.expires_at == upload.created_at + 3600
        assert client.files.content(upload.id).content == _jsonl(5)
        batch = client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "r1", "intent": "i1"},
        )
        assert batch.status == "in_progress" and batch.metadata == {"run": "r1", "intent": "i1"}
        done = _wait(
            lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, "end"
        )
        assert done.request_counts.total == 5 and done.request_counts.completed == 5
        assert done.error_file_id is None
        lines = client.files.content(done.output_file_id).text.splitlines()
        answers = {row["custom_id"]: row for row in map(json.loads, lines)}
        assert sorted(answers) == [f"x-{i}" for i in range(5)]
        body = answers["x-0"]["response"]["body"]
        online = client.chat.completions.create(
            model="sim-chat", messages=[{"role": "user", "content": "x 0"}]
        )
        assert body["choices"][0]["message"]["content"] == online.choices[0].message.content
        # listed newest first, and the file is gone once deleted
        second = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert [b.id for b in client.batches.list(limit=1)] == [second.id, batch.id]
        assert client.files.delete(upload.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(upload.id)
        _wait(lambda: client.batches.retrieve(second.id).status == "completed", "the second")
        stats = sim.stats()["batch"]
    assert stats["creates"] == 2 and stats["billed_requests"] == 10
    assert stats["billed_again"] == 5  # the second batch asked the same five again


def test_per_request_errors_and_an_expiry_with_partial_output() -> None:
    with serve(batch_turnaround_s=0.2, batch_error_rate=0.3, batch_finish_share=0.5) as sim:
        client = _openai(sim.url)
        upload = client.files.create(file=("in.jsonl", io.BytesIO(_jsonl(20))), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = _wait(
            lambda: (b := client.batches.retrieve(batch.id)).status != "in_progress" and b, "end"
        )
        assert done.status == "expired"
        good = client.files.content(done.output_file_id).text.splitlines()
        bad = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        expired = [r for r in bad if r["error"] and r["error"]["code"] == "batch_expired"]
        errored = [r for r in bad if r["response"] and r["response"]["status_code"] == 500]
        assert len(expired) == 10 and len(good) + len(errored) == 10 and errored
        assert sim.stats()["batch"]["billed_requests"] == len(good)  # only answers are billed


def test_the_queue_limit_fails_a_batch_at_validation_and_a_cancel_keeps_what_finished() -> None:
    # four requests of 7 input tokens each: one batch fits under 40, two do not
    with serve(batch_turnaround_s=30, batch_queue_tokens=40) as sim:
        client = _openai(sim.url)
        small = client.files.create(file=("a.jsonl", io.BytesIO(_jsonl(4, "a"))), purpose="batch")
        first = client.batches.create(
            input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        second = client.batches.create(
            input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        failed = client.batches.retrieve(second.id)
        assert first.status == "in_progress" and failed.status == "failed"
        assert failed.errors is not None and failed.errors.data[0].code == "token_limit_exceeded"
        cancelling = client.batches.cancel(first.id)
        assert cancelling.status == "cancelling"
        ended = _wait(
            lambda: (b := client.batches.retrieve(first.id)).status == "cancelled" and b, "cancel"
        )
        bad = client.files.content(ended.error_file_id).text.splitlines()
        assert all(json.loads(x)["error"]["code"] == "batch_cancelled" for x in bad)
        assert len(bad) == 4  # 30 s turnaround: nothing had finished
        # an ended batch no longer holds the queue: the same file fits again
        third = client.batches.create(
            input_file_id=small.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert third.status == "in_progress"


def test_a_lost_create_answer_leaves_the_batch_to_be_found_by_listing() -> None:
    with serve(batch_turnaround_s=0.1, batch_lose_creates=1) as sim:
        client = _openai(sim.url)
        upload = client.files.create(file=("in.jsonl", io.BytesIO(_jsonl(3))), purpose="batch")
        with pytest.raises(openai.APIConnectionError):
            client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"intent": "lost-one"},
            )
        [found] = [b for b in client.batches.list() if b.metadata == {"intent": "lost-one"}]
        assert found.input_file_id == upload.id
        stats = sim.stats()["batch"]
    assert stats["creates"] == 1 and stats["creates_lost"] == 1


def test_an_anthropic_message_batch_through_the_sdk_results_out_of_order() -> None:
    with serve(batch_turnaround_s=0.3, batch_error_rate=0.2) as sim:
        client = anthropic.Anthropic(base_url=sim.root, api_key="sim", max_retries=0)
        requests: Any = [
            {
                "custom_id": f"m-{i}",
                "params": {
                    "model": "sim-chat",
                    "max_tokens": 64,
                    "system": "Answer briefly.",
                    "messages": [{"role": "user", "content": f"item {i}"}],
                },
            }
            for i in range(12)
        ]
        batch = client.messages.batches.create(requests=requests)
        assert batch.processing_status == "in_progress" and batch.request_counts.processing == 12
        assert [b.id for b in client.messages.batches.list(limit=5)] == [batch.id]
        _wait(
            lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended", "end"
        )
        results = list(client.messages.batches.results(batch.id))
        ids = [r.custom_id for r in results]
        assert sorted(ids) == sorted(f"m-{i}" for i in range(12)) and ids != sorted(ids)
        kinds = {r.result.type for r in results}
        assert kinds == {"succeeded", "errored"}
        ok = next(r.result for r in results if r.result.type == "succeeded")
        assert ok.message.usage.output_tokens > 0  # type: ignore[union-attr]
        assert sim.stats()["batch"]["billed_requests"] == sum(
            r.result.type == "succeeded" for r in results
        )


def test_an_anthropic_cancel_ends_the_batch_with_its_unfinished_requests_canceled() -> None:
    with serve(batch_turnaround_s=30) as sim:
        client = anthropic.Anthropic(base_url=sim.root, api_key="sim", max_retries=0)
        params: Any = {
            "model": "sim-chat",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }
        batch = client.messages.batches.create(requests=[{"custom_id": "only", "params": params}])
        client.messages.batches.cancel(batch.id)
        ended = _wait(
            lambda: (
                (b := client.messages.batches.retrieve(batch.id)).processing_status == "ended" and b
            ),
            "cancel",
        )
        assert ended.request_counts.canceled == 1
        [result] = list(client.messages.batches.results(batch.id))
        assert result.result.type == "canceled"


def test_a_batchs_turnaround_is_drawn_around_the_median_when_it_varies() -> None:
    import random
    import statistics

    from headrace.sim import SimConfig
    from headrace.sim.batch_book import BatchBook

    fixed = SimConfig(batch_turnaround_s=2.0)
    assert {fixed.turnaround(random.Random(n)) for n in range(5)} == {2.0}
    varied = SimConfig(batch_turnaround_s=2.0, batch_turnaround_sigma=0.5, seed=3)
    draws = [varied.turnaround(random.Random(n)) for n in range(2000)]
    assert 1.9 < statistics.median(draws) < 2.1 and max(draws) > 4 and min(draws) < 1
    book = BatchBook(varied)
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}]}
    made = [book.submit("openai", [("a", body)], "batch_") for _ in range(5)]
    assert len({b.turnaround_s for b in made}) == 5  # each batch its own
    assert all(b.ends() == b.created + b.turnaround_s for b in made)
