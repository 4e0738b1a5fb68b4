"""Checked by mypy in tests/test_typing.py: composition keeps the ends' types."""

from __future__ import annotations

from typing import Any, assert_type

import headrace as hr


class Doc:
    text: str = ""


@hr.step(concurrency=4)
async def fetch(url: str) -> Doc:
    return Doc()


@hr.step
def length(doc: Doc) -> int:
    return len(doc.text)


@hr.step
def upper(doc: Doc) -> str:
    return doc.text.upper()


@hr.step(batch=hr.Batch(max_size=8))
def embed(docs: list[Doc]) -> list[list[float]]:
    return [[0.0] for _ in docs]


assert_type(fetch, hr.FunctionStep[str, Doc])
assert_type(embed, hr.FunctionStep[Doc, list[float]])
assert_type(fetch >> length, hr.Sequence[str, int])
assert_type(fetch >> (length | upper), hr.Sequence[str, tuple[int, str]])
assert_type(length | upper | embed, hr.Parallel[Doc, int, str, list[float]])
assert_type(fetch >> (length | upper) >> hr.merge(), hr.Sequence[str, dict[str, Any]])
assert_type(hr.map(length), hr.MapStep[Doc, int])


def has_text(doc: Doc) -> bool:
    return bool(doc.text)


assert_type(hr.filter(has_text), hr.Filter[Doc])


@hr.step
def row(parts: dict[str, Any]) -> str:
    return str(parts)


# the docs' pattern: named branches into a step that takes their dict
assert_type(hr.parallel(size=length, loud=upper) >> row, hr.Sequence[Any, str])
assert_type(fetch >> hr.parallel(size=length, loud=upper) >> row, hr.Sequence[str, str])
