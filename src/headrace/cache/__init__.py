"""Content-addressed caching of step results: ``@hr.step(cache=True)``.

A step's result for an input is stored under ``sha256(step fingerprint +
canonical input)``: a changed step (code, options, version) has a new
fingerprint, so it never gets an old result. Lookups go tier by tier (memory,
then SQLite, then Redis) and a hit fills the faster tiers it missed; a result
is written to every tier. Identical calls in flight at once are joined
(single-flight), so a dataset full of repeats calls the step once per distinct
input.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..values.checks import positive_int
from ..values.durations import to_seconds
from .keys import canonical, normalise_text
from .tiers import MemoryTier, RedisTier, SqliteTier, Tier, default_path

__all__ = ["Cache", "canonical", "default_path", "normalise_text"]

_TIER_NAMES = ("memory", "sqlite")


class Cache:
    """How a step's results are cached.

    Args:
        tiers: in lookup order: ``"memory"``, ``"sqlite"``, and Redis URLs
            (``"redis://host:6379/0"``). Default: memory, then SQLite.
        ttl: how long an entry lives (seconds or ``"7d"``); ``None``: until cleared.
        max_items: the memory tier's size bound (least recently used go first).
        key: a function of the input giving what the key is made of, e.g.
            :func:`normalise_text` so inputs differing only in case, spacing or
            punctuation share an entry.
        path: the SQLite file; default ``$HEADRACE_CACHE_DIR/cache.sqlite``, else
            ``.headrace/cache.sqlite`` under the working directory.
        version: keep entries across a change to the step's code that does not
            change its results: the key is then made of the step's name and this
            version instead of its code (bump it when results do change).
        types: Pydantic models and dataclasses the step's outputs may hold beyond
            those in its return annotation. An entry is rebuilt only as one of
            these declared types, through validation: a class named by an entry
            (which anyone with write access to a shared cache could have written)
            is never looked up or called otherwise.

    Raises:
        PipelineError: an unknown tier or an invalid value.
    """

    def __init__(
        self,
        tiers: Sequence[str] = _TIER_NAMES,
        *,
        ttl: float | str | None = None,
        max_items: int = 100_000,
        key: Callable[[Any], Any] | None = None,
        path: str | Path | None = None,
        version: str | None = None,
        types: Sequence[type] = (),
        _clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(tiers, str):
            tiers = [tiers]
        if not tiers:
            raise PipelineError("Cache needs at least one tier")
        for tier in tiers:
            if tier not in _TIER_NAMES and not tier.startswith(
                ("redis://", "rediss://", "unix://")
            ):
                raise PipelineError(
                    f"unknown cache tier {tier!r}: tiers are 'memory', 'sqlite' or a redis:// URL"
                )
        if len(set(tiers)) != len(tiers):
            raise PipelineError(f"Cache tiers repeat: {list(tiers)}")
        positive_int(max_items, "Cache max_items")
        if key is not None and not callable(key):
            raise PipelineError("Cache key= must be a function of the input")
        for kind in types:
            if not isinstance(kind, type):
                raise PipelineError(f"Cache types= takes classes, got {kind!r}")
        self.tiers = list(tiers)
        self.types = tuple(types)
        self.ttl_s = None if ttl is None else to_seconds(ttl, option="Cache ttl")
        self.max_items = max_items
        self.key = key
        self.path = Path(path) if path is not None else None
        self.version = version
        self.clock = _clock
        self.memory = MemoryTier(max_items) if "memory" in self.tiers else None

    def __repr__(self) -> str:
        return f"Cache(tiers={self.tiers!r}, ttl={self.ttl_s!r})"

    def key_prefix(self, step_name: str, fingerprint: str) -> bytes:
        """What a step contributes to its keys: its fingerprint, or name and version."""
        if self.version is not None:
            return f"{step_name}\0version\0{self.version}".encode()
        return fingerprint.encode()

    def material(self, value: Any) -> Any:
        """What one input's key is made of: ``key(value)``, or the input itself."""
        return self.key(value) if self.key is not None else value

    def key_of(self, prefix: bytes, value: Any) -> str:
        """The cache key of one input.

        Raises:
            TypeError: the input (after ``key=``) has no canonical form.
        """
        material = self.material(value)
        return hashlib.sha256(prefix + b"\0" + canonical(material)).hexdigest()

    def open_tiers(self) -> list[Tier]:
        """The tiers one run uses, in lookup order (the memory tier is this object's)."""
        opened: list[Tier] = []
        for name in self.tiers:
            if name == "memory":
                assert self.memory is not None
                opened.append(self.memory)
            elif name == "sqlite":
                opened.append(SqliteTier(self.path or default_path(), clock=self.clock))
            else:
                opened.append(RedisTier(name, self.ttl_s))
        return opened
