"""The tiers an LLM step's requests are served on: online (the default) or the
provider's batch tier (``tier="batch"``), answered within a day at half the price,
every request submitted and paid for at most once whatever kills the run.

``settings`` holds :class:`BatchTier`; ``ledger`` the batches a run intends,
submits and collects, on disk; ``openai_batches`` the provider shape (OpenAI's
files and batches, and every endpoint that copies them); ``submitter`` the tier
at work in a run."""

from .settings import BatchTier

__all__ = ["BatchTier"]
