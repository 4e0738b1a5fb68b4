"""Text clean-up for the recipe in docs/recipes.md."""

from typing import Any


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its text's runs of whitespace made single spaces."""
    return {**record, "text": " ".join(str(record["text"]).split())}
