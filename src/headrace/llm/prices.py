"""What LLM calls cost: a price table per model, in US dollars per million tokens.

A client looks a model's price up in the user's ``prices={...}`` first, then in
the maintained table on PyPI (``genai-prices``, :mod:`headrace.llm.price_table`),
then in this module's small table of common OpenAI models (standard tier, as of
2026), which answers for what the maintained one lacks (embedding models). A model
with no price has no cost (shown as unpriced), and a run with a dollar budget
refuses to start with such a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PipelineError

__all__ = ["PRICES", "Price"]


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in US dollars per million tokens.

    Args:
        input: per million prompt tokens.
        output: per million completion tokens.
    """

    input: float
    output: float = 0.0

    def __post_init__(self) -> None:
        if not self.input >= 0 or not self.output >= 0:
            raise PipelineError(f"a Price must not be negative, got {self!r}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The dollars a call with these token counts costs."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
}
"""Built-in prices, by model name (copied into each client, so editing a client's
``prices`` never changes another's)."""
