"""Conditions, prompts and sinks see one item the same way (headrace.values.fields.fields_of)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from headrace.io.columns import as_record
from headrace.llm.prompts import record_fields
from headrace.pipeline.graph import names_of
from headrace.values.fields import fields_of


class Author(BaseModel):
    name: str


class Book(BaseModel):
    title: str
    author: Author
    published: datetime.date


@dataclasses.dataclass
class Note:
    text: str
    tags: list[str]


@pytest.mark.parametrize(
    "item",
    [
        Book(title="T", author=Author(name="A"), published=datetime.date(2020, 1, 2)),
        Note(text="n", tags=["a", "b"]),
        {"id": 1, "text": "x"},
        "a line of text",
    ],
)
def test_every_part_reads_the_same_fields(item: Any) -> None:
    expected = fields_of(item)
    assert names_of(item) == record_fields(item) == as_record(item) == expected


def test_a_model_is_read_as_its_json_says() -> None:
    book = Book(title="T", author=Author(name="A"), published=datetime.date(2020, 1, 2))
    assert fields_of(book) == {"title": "T", "author": {"name": "A"}, "published": "2020-01-02"}
    assert fields_of("x") == {"text": "x"}
    assert names_of(7) == {}  # a condition on an item without fields sees none
    with pytest.raises(TypeError, match="expected a record"):
        fields_of(7)
