"""headrace sim: the OpenAI SDK works against it unchanged; limits, headers and faults."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import openai
import pytest

from headrace.sim import SimConfig, serve
from headrace.sim.server import SimState

MESSAGES = [{"role": "user", "content": "Summarise the State of the Union in one line."}]


def client(url: str, max_retries: int = 0, timeout: float = 30.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="sim", max_retries=max_retries, timeout=timeout)


def test_chat_embeddings_models_and_stream_through_the_openai_sdk() -> None:
    with serve() as sim:
        sdk = client(sim.url)
        first = sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=20)
        again = sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=20)
        assert first.choices[0].message.content == again.choices[0].message.content
        assert first.usage is not None and first.usage.completion_tokens <= 20
        assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
        other = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert other.choices[0].message.content != first.choices[0].message.content

        stream = sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == first.choices[0].message.content
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == first.usage.total_tokens

        # the SDK asks for base64 vectors by default; plain floats must match them
        vectors = sdk.embeddings.create(model="e", input=["a", "b"], dimensions=16)
        floats = sdk.embeddings.create(
            model="e", input=["a", "b"], dimensions=16, encoding_format="float"
        )
        assert [len(d.embedding) for d in vectors.data] == [16, 16]
        assert vectors.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
        assert vectors.data[0].embedding != vectors.data[1].embedding
        assert {m.id for m in sdk.models.list()} == {"sim-chat", "sim-embed"}
        stats = sim.stats()
    assert stats["requests"] == stats["ok"] == 6


def test_over_the_limit_is_a_429_with_openai_headers_and_the_sdk_retry_gets_through() -> None:
    with serve(rpm=120, burst=1) as sim:
        sdk = client(sim.url)
        sdk.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="m", messages=MESSAGES)
        headers = caught.value.response.headers
        assert headers["x-ratelimit-limit-requests"] == "120"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("ms")
        assert 1 <= int(headers["retry-after-ms"]) <= 500
        assert headers["retry-after"] == "1"
        # the SDK's own retry honours retry-after-ms and then succeeds
        patient = client(sim.url, max_retries=4)
        reply = patient.chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].message.content
        stats = sim.stats()
    assert stats["ok"] == 2
    assert stats["throttled"] >= 1
    assert sum(stats["windows"]["throttled"]) == stats["throttled"]


def test_a_token_limit_refuses_what_does_not_fit_and_says_so() -> None:
    with serve(tpm=6000, token_burst=100) as sim:
        sdk = client(sim.url)
        sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=40)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=40)
        headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-tokens"] == "6000"
    assert int(headers["x-ratelimit-remaining-tokens"]) < 60
    assert "x-ratelimit-limit-requests" not in headers


def test_the_concurrency_cap_answers_429_beyond_it() -> None:
    async def main(url: str) -> list[int]:
        sdk = openai.AsyncOpenAI(base_url=url, api_key="sim", max_retries=0)

        async def one() -> int:
            try:
                await sdk.chat.completions.create(model="m", messages=MESSAGES)
            except openai.RateLimitError:
                return 429
            return 200

        return sorted(await asyncio.gather(*(one() for _ in range(3))))

    with serve(concurrency=1, latency_ms=300) as sim:
        assert asyncio.run(main(sim.url)) == [200, 429, 429]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("429", openai.RateLimitError),
        ("reset", openai.APIConnectionError),
        ("truncated", openai.APIConnectionError),
        ("hang", openai.APITimeoutError),
    ],
)
def test_each_fault_reaches_the_client_as_documented(fault: str, expected: type[Exception]) -> None:
    with serve(faults={fault: 1.0}, hang_s=5) as sim:
        sdk = client(sim.url, timeout=0.5)
        with pytest.raises(expected) as caught:
            sdk.chat.completions.create(model="m", messages=MESSAGES)
        if fault in ("500", "503"):
            assert getattr(caught.value, "status_code", None) == int(fault)
        stats = sim.stats()
    assert stats["ok"] == 0
    assert stats["faults"].get(fault, 0) + stats["throttled"] == 1


def test_a_malformed_body_is_not_json() -> None:
    with serve(faults={"malformed": 1.0}) as sim:
        request = urllib.request.Request(
            f"{sim.url}/chat/completions",
            data=json.dumps({"model": "m", "messages": MESSAGES}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            body = answer.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_fault_rates_are_drawn_at_the_rate_set() -> None:
    with serve(faults={"503": 0.3}, seed=7) as sim:
        sdk = client(sim.url)
        failures = 0
        for _ in range(200):
            try:
                sdk.embeddings.create(model="e", input="x")
            except openai.InternalServerError:
                failures += 1
        stats = sim.stats()
    assert stats["faults"]["503"] == failures
    assert 40 <= failures <= 80


def test_a_bad_request_is_a_400_and_reset_zeroes_the_counters() -> None:
    with serve() as sim:
        sdk = client(sim.url)
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="m", messages=[])
        assert sim.stats()["requests"] == 1
        sim.reset()
        assert sim.stats()["requests"] == 0


def test_repeatable_latency_is_a_function_of_the_request() -> None:
    config = SimConfig(latency_ms=100, latency_sigma=0.5, repeatable=True)
    import random

    draws = {config.latency_s(random.Random(seed)) for seed in range(50)}
    assert len(draws) == 50  # lognormal: varies by request...
    assert config.latency_s(random.Random(3)) == config.latency_s(random.Random(3))  # ...repeats


def test_storms_fall_in_the_configured_windows() -> None:
    state = SimState(SimConfig(storm_every=10, storm_for=2))
    start = state.started
    assert not state.in_storm(start + 1)
    assert not state.in_storm(start + 7.9)
    assert state.in_storm(start + 8.1)
    assert state.in_storm(start + 9.9)
    assert not state.in_storm(start + 10.1)


def test_it_refuses_anything_but_loopback_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="loopback"), serve(host="0.0.0.0"):
        pass
    with pytest.raises(ValueError, match="unknown sim fault"):
        SimConfig(faults={"404": 0.1})
    with pytest.raises(ValueError, match="add up"):
        SimConfig(faults={"500": 0.6, "503": 0.6})


@pytest.mark.slow
def test_serve_in_a_child_process() -> None:
    with serve(rpm=600, process=True) as sim:
        sdk = client(sim.url)
        sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert sim.stats()["ok"] == 1
    with pytest.raises(urllib.error.URLError):
        sim.stats()


@pytest.mark.slow
def test_the_command_line_serves_until_stopped() -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "headrace", "sim", "--port", "0", "--rpm", "60"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("headrace sim listening on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/models", timeout=10) as answer:
            assert json.loads(answer.read())["object"] == "list"
    finally:
        child.terminate()
        child.wait(timeout=30)
    refused = subprocess.run(
        [*command[:3], "sim", "--host", "0.0.0.0"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "loopback" in refused.stderr
