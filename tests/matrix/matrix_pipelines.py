"""The pipelines of the combination matrix, one per group of step kinds, importable by
name (``matrix_pipelines:functions``) so that a killed subprocess and Ray workers build
the same ones. The LLM pipeline asks the sim at ``$MATRIX_SIM_URL``."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from pydantic import BaseModel

import headrace as hr

# -- plain functions: sync, async, a thread, a process, a micro-batch -------------------


@hr.step
def tidy(item: dict[str, Any]) -> dict[str, Any]:
    """Sync: the text with its spaces collapsed."""
    return {"id": item["id"], "text": " ".join(item["text"].split())}


@hr.step(concurrency=4)
async def count_words(item: dict[str, Any]) -> dict[str, Any]:
    """Async: the number of words."""
    await asyncio.sleep(0)
    return {**item, "words": len(item["text"].split())}


@hr.step(executor="thread", concurrency=2)
def shout(item: dict[str, Any]) -> dict[str, Any]:
    """On a thread: the text in capitals."""
    return {**item, "loud": item["text"].upper()}


@hr.step(executor="process", concurrency=2)
def digest(item: dict[str, Any]) -> dict[str, Any]:
    """In a process: a short hash of the text."""
    return {**item, "digest": hashlib.sha256(item["text"].encode()).hexdigest()[:12]}


@hr.step(batch=hr.Batch(max_size=8, max_wait=0.01))
def lengths(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Micro-batched: the length of each text."""
    return [{**item, "length": float(len(item["text"]))} for item in items]


functions = tidy >> count_words >> shout >> digest >> lengths


# -- LLM steps: a Jinja prompt, a packed transduction, a cascade ------------------------


class Gist(BaseModel):
    """What the transduction reads out of each text."""

    topic: str
    score: int


def _client() -> Any:
    return hr.llm.Client(base_url=os.environ.get("MATRIX_SIM_URL", "http://127.0.0.1:9/v1"))


def _confident(gist: Gist) -> bool:
    return gist.score % 2 == 0


def _llm() -> hr.Step[Any, Any]:
    client = _client()
    summary = hr.llm.complete(
        client=client,
        model="gpt-4o-mini",
        prompt="Summarise in {{ words }} words: {{ text | upper }}",
        name="summary",
        max_tokens=12,
        tier=hr.llm.FlexTier(backoff=0.01),  # the sim refuses some: waited out, same answers
    )
    gist = hr.llm.transduce(
        Gist, client=client, model="gpt-4o-mini", fields=["text"], pack=4, repair=True, name="gist"
    )
    fast = hr.llm.transduce(Gist, client=client, model="small", fields=["text"], name="fast")
    smart = hr.llm.transduce(Gist, client=client, model="large", fields=["text"], name="smart")
    routed = hr.llm.cascade([fast, smart], accept=_confident, name="routed")
    return (
        count_words
        >> hr.with_input(summary, field="summary")
        >> hr.with_input(gist, field="gist")
        >> hr.with_input(routed, field="routed")
    )


llm = _llm()


# -- local models: an embedding and VADER, kept with the record --------------------------


def _models() -> hr.Step[Any, Any]:
    embed = hr.models.embed(field="text")
    tone = hr.models.sentiment(field="text")
    return hr.with_input(embed, field="embedding") >> hr.with_input(tone, field="tone")


models = _models()


# -- the recipe graph's functions ---------------------------------------------------------


def split_words(item: dict[str, Any]) -> dict[str, Any]:
    """A record with its words as a list, and how many."""
    parts = item["text"].split()
    return {"id": item["id"], "parts": parts, "n": len(parts)}


def upper(word: str) -> str:
    """One word in capitals (a map's step)."""
    return word.upper()


def joined(words: list[str]) -> dict[str, Any]:
    """The words of a list joined (the sub-recipe's step)."""
    return {"joined": "-".join(words)}


def assemble(parts: dict[str, Any]) -> dict[str, Any]:
    """The fan-in: the record's id, its word count and the joined words."""
    return {"id": parts["words"]["id"], "n": parts["words"]["n"], "joined": parts["sub"]["joined"]}
