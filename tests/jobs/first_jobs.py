"""Pipelines the first-hour tests load by import path (``first_jobs:...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

import headrace as hr


@hr.step
def odd_fails(row: dict[str, object]) -> dict[str, object]:
    """Fails on every odd ``n``."""
    n = row["n"]
    assert isinstance(n, int)
    if n % 2:
        raise ValueError(f"{n} is odd")
    return row


@hr.step
def passes(row: dict[str, object]) -> dict[str, object]:
    """Hands every record on."""
    return row


def _down_llm(max_outage: float) -> hr.llm.Complete:
    """An LLM step whose endpoint ($DOWN_URL) is down, and whose circuit gives up on
    it after ``max_outage`` seconds."""
    import os

    llm = hr.llm.Client(
        base_url=os.environ.get("DOWN_URL", "http://127.0.0.1:9/v1"),
        retry=hr.Retry(attempts=2, backoff=0.001),
        circuit=hr.Circuit(failures=2, reset=0.05, max_outage=max_outage),
    )
    return hr.llm.complete(prompt="Say {text}", client=llm, model="m")


down_llm = _down_llm(0.3)

long_down_llm = _down_llm(2.0)
"""An endpoint that stays down for the whole 2 s the run waits for it."""


class Info(BaseModel):
    """What the first-hour recipes ask an LLM for."""

    kind: Literal["library", "tool"]
    keywords: list[str]
