"""Limits on how much work a step may do at once."""

from .concurrency import ConcurrencyLimit, ConcurrencyStatistics

__all__ = ["ConcurrencyLimit", "ConcurrencyStatistics"]
