"""Functions and models the recipe tests name by import path."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel

import headrace as hr

NOT_A_FUNCTION = 42


class Verdict(BaseModel):
    tone: Literal["hopeful", "somber", "combative", "neutral"]


def clean(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "text": " ".join(str(record["text"]).split())}


async def shout(record: dict[str, Any]) -> str:
    await asyncio.sleep(0)
    return str(record["text"]).upper()


def length(record: dict[str, Any]) -> int:
    return len(record["text"])


def words(record: dict[str, Any]) -> list[str]:
    return str(record["text"]).split()


def checked(word: str) -> str:
    if word == "bad":
        raise ValueError("a bad word")
    return word.title()


def count(items: list[Any]) -> int:
    return len(items)


def both(parts: dict[str, Any]) -> dict[str, Any]:
    return {"parents": sorted(parts), **parts}


def label(value: Any) -> str:
    return f"label:{value}"


@hr.step(name="decorated", concurrency=3)
def decorated(record: dict[str, Any]) -> str:
    return str(record["text"])[::-1]


class Words(BaseModel):
    words: list[str]
    count: int


def split_words(record: dict[str, Any]) -> Words:
    found = str(record["text"]).split()
    return Words(words=found, count=len(found))
