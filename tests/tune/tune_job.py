"""Pipelines for the tune tests: a CPU-bound thread step, an async step that waits,
and an LLM step whose client names no endpoint (bench and profile point it at a sim)."""

import asyncio

from pydantic import BaseModel

import headrace as hr


@hr.step(executor="thread", concurrency=2)
def burn(n: int) -> int:
    total = 0
    for i in range(40_000):  # about a millisecond of the interpreter's time
        total += i * n % 7
    return total


@hr.step(concurrency=8)
async def nap(n: int) -> int:
    await asyncio.sleep(0.01)
    return n


class Label(BaseModel):
    label: str


llm = hr.llm.Client(base_url="http://127.0.0.1:9/v1", retry=hr.Retry(attempts=1))
label = hr.llm.transduce(Label, client=llm, model="gpt-4o-mini", name="label", concurrency=4)


@hr.step
def as_record(n: int) -> dict[str, int]:
    return {"n": n}


cpu = burn >> nap
calls = as_record >> label
