"""The one way headrace opens a connection to Redis for a Lua script: shared rate
limits, shared concurrency limits and shared budgets each run one script a call."""

from __future__ import annotations

from typing import Any

from ..errors import PipelineError

__all__ = ["redis_script"]


def redis_script(url: str, lua: str, needed_by: str) -> tuple[Any, Any]:
    """An asyncio Redis client for ``url`` (2 s timeouts: a Redis that does not answer
    is an outage, not a wait) and ``lua`` registered on it.

    Raises:
        PipelineError: the ``redis`` package is not installed (``needed_by`` names
            what needs it, e.g. ``"hr.Rate(shared='redis://...')"``).
    """
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the extras installed
        raise PipelineError(
            f"{needed_by} needs the redis package: pip install 'headrace[redis]'"
        ) from exc
    client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return client, client.register_script(lua)
