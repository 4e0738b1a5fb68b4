"""The models and functions the transduction recipe (transduce.yaml) names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Product(BaseModel):
    """A catalogue entry read out of a free-text listing."""

    name: str
    category: Literal["kitchen", "garden", "tools", "toys", "other"]
    price_usd: float | None = Field(default=None, ge=0)
    in_stock: bool = True


def entry(product: Product) -> dict[str, Any]:
    """One flat catalogue row."""
    return product.model_dump()
