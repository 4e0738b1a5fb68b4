"""Model prices from a maintained table on PyPI: pydantic's ``genai-prices``.

A client's price of a model is, in this order: the user's (``Client(prices=...)``),
the maintained table's (matched by the model's name and the client's API URL, or
by the name alone for an endpoint it does not know), then the small built-in table
(:data:`~headrace.llm.prices.PRICES`, for models the maintained one lacks). The
maintained table prices a request by its size where a provider's price does (long
context), so a model's price is read at a typical request's size (1,000 tokens),
once per client and model. Its version shows in the run summary.

The table also prices the other tiers of some models, as variants
(``{"service_tier": "flex"}``, ``{"processing": "batch"}``): :meth:`Client.price
<headrace.llm.client.Client.price>` asks for them and, where a model has none,
applies the tier's share of the standard price (``tests/llm/test_price_table.py``).
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from .prices import Price

__all__ = ["table_price", "table_version"]

_PROBE = 1000  # tokens: a typical request, below any long-context price step


@functools.lru_cache(maxsize=1024)
def table_price(model: str, api_url: str, variant: tuple[str, str] | None = None) -> Price | None:
    """The maintained table's price of ``model`` at ``api_url`` (``None``: not in it),
    standard, or its ``variant`` (``("service_tier", "flex")``: the standard price
    where the model has no such variant)."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # not installed: the built-in table answers
        return None
    context = dict([variant]) if variant is not None else None
    try:
        prompt = calc_price(
            Usage(input_tokens=_PROBE), model, provider_api_url=api_url, price_context=context
        )
        completion = calc_price(
            Usage(output_tokens=_PROBE), model, provider_api_url=api_url, price_context=context
        )
    except LookupError:
        try:  # an endpoint the table does not know (a proxy, a local server): by name
            prompt = calc_price(Usage(input_tokens=_PROBE), model, price_context=context)
            completion = calc_price(Usage(output_tokens=_PROBE), model, price_context=context)
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
