"""An LLM item's dead letter says how many requests were sent for it and why it
failed, in words (a timeout too)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from services import arun_quietly, run_quietly

import headrace as hr
from headrace.sim import serve

FAST = hr.Retry(attempts=3, backoff=0.001, max_delay=0.002, budget=None)


def test_the_dead_letter_counts_every_request_sent_for_the_item() -> None:
    with serve(faults={"500": 1.0}) as sim:
        # without a circuit: with one, a provider failing every call is an outage
        llm = hr.llm.Client(base_url=sim.url, retry=FAST, circuit=False)
        say = hr.llm.complete(prompt="Say {text}", client=llm, model="gpt-4o-mini")
        result = run_quietly(say, [{"text": f"t{i}"} for i in range(5)])
        stats = sim.stats()
    assert result.items_dead == 5 and stats["requests"] == 15
    assert [d.attempts for d in result.dead_letters] == [3] * 5  # it used to say 1
    assert all("500" in d.message for d in result.dead_letters)
    # and what stopped the retries
    assert all("retries stopped: all 3 attempts failed" in d.message for d in result.dead_letters)


def test_a_dead_letter_says_when_its_failure_was_not_retried() -> None:
    calls = 0

    @hr.step(retry=FAST)
    async def picky(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ValueError("not this one")

    [dead] = run_quietly(picky, [1]).dead_letters
    assert calls == 1 and dead.attempts == 1
    assert "not retried: ValueError is not a retryable failure" in dead.message


@contextmanager
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        listener.close()


def test_a_timeout_says_what_timed_out() -> None:
    with silent_server() as url:
        llm = hr.llm.Client(
            base_url=url, timeout=0.2, retry=hr.Retry(attempts=2, backoff=0.001), circuit=False
        )
        say = hr.llm.complete(prompt="Say {text}", client=llm, model="gpt-4o-mini")
        result = asyncio.run(arun_quietly(say, [{"text": "x"}]))
    [dead] = result.dead_letters
    assert dead.attempts == 2
    assert dead.error_type == "TimeoutError"
    assert dead.message == (
        f"{url}/chat/completions: no answer within 0.2 s (retries stopped: all 2 attempts failed)"
    )
