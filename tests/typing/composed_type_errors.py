"""Checked by mypy in tests/test_typing.py: each marked line must be a type error."""

from __future__ import annotations

import headrace as hr


@hr.step
def length(text: str) -> int:
    return len(text)


@hr.step
def shout(text: str) -> str:
    return text.upper()


wrong_order = length >> shout  # error: an int does not go into a step that takes str
