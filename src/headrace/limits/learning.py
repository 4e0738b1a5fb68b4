"""How :meth:`~headrace.limits.rate.Rate.auto` learns a provider's limit: from
``x-ratelimit-*`` headers when a response carries them, else from 429s, by
additive increase and multiplicative decrease around the rate getting through."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..values.durations import parse_compound

if TYPE_CHECKING:
    from .rate import Permit, Rate

__all__ = ["Learner", "header", "lower"]


def header(headers: Mapping[str, str], name: str) -> float | None:
    """A header's number (``"1m30s"``-style durations too), or ``None``."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return parse_compound(str(raw))


def lower(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Headers with their names in lower case."""
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


class Learner:
    """What :meth:`Rate.auto` knows of the limit, and how it moves it."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.source: str | None = None  # "headers" or "429s"
        self.successes: deque[float] = deque()
        self.last_change = 0.0
        self.cut_at = -math.inf

    def success(self, now: float) -> None:
        self.successes.append(now)
        while self.successes and self.successes[0] < now - 1.0:
            self.successes.popleft()

    def getting_through(self, now: float) -> float:
        """Successes a second over the last second."""
        while self.successes and self.successes[0] < now - 1.0:
            self.successes.popleft()
        return float(len(self.successes))

    def learn(self, headers: Mapping[str, str], permit: Permit | None) -> bool:
        """Take the limit from ``x-ratelimit-*`` headers; whether they named one."""
        readings = self.read(headers, permit)
        if readings:
            self.apply(readings)
        return bool(readings)

    def read(
        self, headers: Mapping[str, str], permit: Permit | None
    ) -> dict[str, tuple[float, float | None]]:
        """What the headers say: per kind (``requests``, ``tokens``) the rate per
        second, and the level the bucket should start at when it is new."""
        rate = self.rate
        readings: dict[str, tuple[float, float | None]] = {}
        for kind in ("requests", "tokens"):
            limit = header(headers, f"x-ratelimit-limit-{kind}")
            if limit is None or not limit > 0:
                continue
            per_second = limit / 60  # OpenAI's limit headers are per minute
            bucket = rate.local.requests if kind == "requests" else rate.local.tokens
            level = None
            remaining = header(headers, f"x-ratelimit-remaining-{kind}")
            if bucket is None and remaining is not None and permit is not None:
                # the provider counted up to this call; ours must also count the calls since
                since = (
                    rate.tickets - permit.ticket
                    if kind == "requests"
                    else rate.tokens_reserved - permit.tokens_before - permit.tokens
                )
                level = remaining - since - rate.headroom_for(per_second, max(1.0, per_second))
            readings[kind] = (per_second, level)
        return readings

    def apply(self, readings: Mapping[str, tuple[float, float | None]]) -> None:
        """Set this process's buckets to a limit learned from headers."""
        rate = self.rate
        for kind, (per_second, level) in readings.items():
            bucket = rate.local.requests if kind == "requests" else rate.local.tokens
            if bucket is None or not math.isclose(bucket.rate, per_second, rel_tol=1e-6):
                setter = rate.set_requests if kind == "requests" else rate.set_tokens
                setter(per_second, level)
        self.source = "headers"
        rate.wake()

    def cut(self) -> None:
        """A 429 said nothing of the limit: lower the rate (or set the first one)."""
        rate = self.rate
        if self.source == "headers":
            return
        now = rate.clock()
        bucket = rate.local.requests
        if bucket is None:
            through = self.getting_through(now)
            rate.set_requests(max(1.0, through), level=0.0)
            self.source = "429s"
            rate.wake()
        elif now - self.cut_at > 1.0 / bucket.rate + 0.2:  # once per burst of 429s
            rate.set_requests(max(0.1, bucket.rate * 0.85))
        else:
            return
        self.cut_at = self.last_change = now

    def grow(self) -> None:
        """Healthy for a second since the last change: raise a 429-learned rate by 2%."""
        rate = self.rate
        bucket = rate.local.requests
        if self.source != "429s" or bucket is None:
            return
        now = rate.clock()
        if now - self.last_change >= 1.0:
            rate.set_requests(bucket.rate * 1.02)
            self.last_change = now
