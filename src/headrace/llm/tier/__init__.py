"""The tiers an LLM step's requests are served on: online (the default), the
provider's flex tier (``tier="flex"``: answered now, more slowly, at a lower price,
sometimes refused for lack of capacity) or its batch tier (``tier="batch"``),
answered within a day at half the price, every request submitted and paid for at
most once whatever kills the run; or ``tier="auto"``, each request by the cheapest of
them that still meets the run's deadline (``auto``).

``settings`` holds :class:`BatchTier`; ``flex`` holds :class:`FlexTier` and what each
provider's flex is; ``flex_connection`` the flex tier at work in a run; ``ledger``
the batches a run intends, submits and collects, on disk; ``openai_batches`` the
provider shape (OpenAI's files and batches, and every endpoint that copies them);
``submitter`` the batch tier at work in a run."""

from .auto import AutoTier
from .flex import FlexTier
from .settings import BatchTier

__all__ = ["AutoTier", "BatchTier", "FlexTier"]
