"""LLM steps over any OpenAI-compatible endpoint: typed structured output, packing,
embeddings, streaming, tokens and cost, routing and cascades.

::

    llm = hr.llm.Client(base_url=..., models={"fast": "gpt-4o-mini"},
                        rate=hr.Rate.auto(), retry=hr.Retry(attempts=6))
    tone = hr.llm.transduce(Verdict, client=llm, model="fast",
                            instructions="Judge the tone.", fields=["text"], pack=8)
    summary = hr.llm.complete(client=llm, model="fast", prompt="Summarise: {text}")
    vectors = hr.llm.embed(client=llm, model="text-embedding-3-small")
    cheap = hr.llm.transduce(Verdict, client=llm, model="fast",
                             instructions="Judge the tone.", tier="batch")  # half the price
    slower = hr.llm.transduce(Verdict, client=llm, model="fast",
                              instructions="Judge the tone.", tier="flex")  # now, cheaper
"""

from .client import Client, Connection, MalformedResponse, ProviderError, Reply
from .prices import PRICES, Price
from .prompts import PromptError, Template
from .routing import Cascade, cascade, complexity
from .secrets import Secret
from .stats import LLMStats
from .steps import Complete, Embed, LLMStep, Transduce, complete, embed, transduce
from .structured import Structured, StructuredOutputError
from .tier import AutoTier, BatchTier, FlexTier

__all__ = [
    "PRICES",
    "AutoTier",
    "BatchTier",
    "Cascade",
    "Client",
    "Complete",
    "Connection",
    "Embed",
    "FlexTier",
    "LLMStats",
    "LLMStep",
    "MalformedResponse",
    "Price",
    "PromptError",
    "ProviderError",
    "Reply",
    "Secret",
    "Structured",
    "StructuredOutputError",
    "Template",
    "Transduce",
    "cascade",
    "complete",
    "complexity",
    "embed",
    "transduce",
]
