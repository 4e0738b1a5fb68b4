"""A cache sent to another process (a Ray worker) travels without its memory tier's entries."""

from __future__ import annotations

import asyncio
import pickle

import headrace as hr
from headrace.cache.tiers import MemoryTier


def test_a_memory_tier_is_pickled_empty_with_its_size() -> None:
    cache = hr.Cache(["memory"], max_items=7)
    assert isinstance(cache.memory, MemoryTier)
    asyncio.run(cache.memory.put(("k", "step", "prefix", b"value", None)))
    assert len(cache.memory.entries) == 1
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.memory is not None
    assert copy.memory.entries == {} and copy.memory.max_items == 7
