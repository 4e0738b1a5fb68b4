"""The answer the recipe in docs/recipes.md asks its LLM for."""

from typing import Literal

from pydantic import BaseModel


class Verdict(BaseModel):
    """The tone of one paragraph."""

    tone: Literal["hopeful", "somber", "combative", "neutral"]
