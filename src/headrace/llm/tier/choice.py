"""``tier=`` as a step is given it: a name or a tier's settings."""

from __future__ import annotations

from typing import Any

from ...errors import PipelineError
from .auto import AutoTier
from .flex import FlexTier
from .settings import BatchTier

__all__ = ["tier_of"]


def tier_of(value: Any, owner: str) -> Any:
    """``tier=`` as given to a step: ``None`` for the online tier, the batch, flex or
    auto tier's settings otherwise.

    Raises:
        PipelineError: not ``"online"``, ``"flex"``, ``"batch"``, ``"auto"``, or a
            :class:`FlexTier`, :class:`BatchTier` or ``AutoTier``.
    """
    if value is None or value == "online":
        return None
    named = {"batch": BatchTier, "flex": FlexTier, "auto": AutoTier}
    if isinstance(value, str) and value in named:
        return named[value]()
    if isinstance(value, BatchTier | FlexTier | AutoTier):
        return value
    raise PipelineError(
        f"{owner}: tier must be 'online', 'flex', 'batch', 'auto', hr.llm.FlexTier(...), "
        f"hr.llm.BatchTier(...) or hr.llm.AutoTier(...), got {value!r}"
    )
