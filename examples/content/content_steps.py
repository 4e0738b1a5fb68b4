"""The functions and models the content recipe (content.yaml) names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Review(BaseModel):
    """An editor's verdict on a draft."""

    verdict: Literal["publish", "revise"]
    score: int = Field(ge=1, le=10)


def sections(outline: str) -> list[str]:
    """The outline's lines, each the heading of one section (at most five)."""
    lines = [line.strip(" -*#0123456789.") for line in outline.splitlines()]
    return [line for line in lines if line][:5] or [outline[:80]]


def assemble(parts: dict[str, Any]) -> dict[str, Any]:
    """The article: its sections joined, with the editor's review, and the revision if any."""
    review: Review = parts["review"]
    article = parts.get("revise") or parts["draft"]
    return {
        "article": article,
        "score": review.score,
        "verdict": review.verdict,
        "revised": "revise" in parts,
    }


def join(paragraphs: list[str]) -> str:
    """The sections' paragraphs as one draft."""
    return "\n\n".join(paragraphs)
