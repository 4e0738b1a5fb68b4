"""Model prices from a maintained table on PyPI: pydantic's ``genai-prices``.

A client's price of a model is, in this order: the user's (``Client(prices=...)``),
the maintained table's (matched by the model's name and the client's API URL, or
by the name alone for an endpoint it does not know), then the small built-in table
(:data:`~headrace.llm.prices.PRICES`, for models the maintained one lacks). The
maintained table prices a request by its size where a provider's price does (long
context), so a model's price is read at a typical request's size (1,000 tokens),
once per client and model. Its version shows in the run summary.

``genai-prices`` 0.2.5 carries OpenAI's flex and priority prices but no batch
price: the batch tier applies :data:`~headrace.llm.tier.settings.BATCH_PRICE_SHARE`
on top (checked by ``tests/llm/test_price_table.py``).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from .prices import Price

__all__ = ["table_price", "table_version"]

_PROBE = 1000  # tokens: a typical request, below any long-context price step


@functools.lru_cache(maxsize=1024)
def table_price(model: str, api_url: str) -> Price | None:
    """The maintained table's price of ``model`` at ``api_url`` (``None``: not in it)."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # not installed: the built-in table answers
        return None
    try:
        prompt = calc_price(Usage(input_tokens=_PROBE), model, provider_api_url=api_url)
        completion = calc_price(Usage(output_tokens=_PROBE), model, provider_api_url=api_url)
    except LookupError:
        try:  # an endpoint the table does not know (a proxy, a local server): by name
            prompt = calc_price(Usage(input_tokens=_PROBE), model)
            completion = calc_price(Usage(output_tokens=_PROBE), model)
        except LookupError:
            return None
    per_million = 1_000_000 / _PROBE
    return Price(
        input=float(prompt.total_price) * per_million,
        output=float(completion.total_price) * per_million,
    )


def table_version() -> str | None:
    """The maintained table's version (``"genai-prices 0.2.5"``), if it is installed."""
    try:
        return f"genai-prices {version('genai-prices')}"
    except PackageNotFoundError:
        return None
