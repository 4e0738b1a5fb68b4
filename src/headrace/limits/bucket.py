"""A token bucket: the arithmetic both sides of a rate limit share.

The provider's side (``headrace sim``) *refuses* a request the bucket cannot
pay for; the caller's side (:class:`~headrace.limits.rate.Rate`) *reserves*:
it takes the cost at once, lets the level go below zero, and waits until the
bucket has refilled that debt. Reserving in arrival order is what keeps waiting
callers from herding: the k-th caller in a queue is told to wait k costs' worth
of refill, so they leave one by one at the bucket's rate, not all at once.

Time is passed in (seconds on any monotonic clock), so the arithmetic is tested
with a fake clock and no sleeping.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second into a bucket holding at most ``capacity``; starts full.

    Args:
        rate: tokens added per second (> 0).
        capacity: the most tokens the bucket holds: the burst (> 0).
        now: the clock's reading at creation.
    """

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if not rate > 0 or not capacity > 0:
            raise ValueError(f"a token bucket needs rate > 0 and capacity > 0: {rate}, {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.level = float(capacity)
        self.updated = now

    def refill(self, now: float) -> float:
        """Bring the level up to ``now`` and return it (negative while in debt)."""
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
        return self.level

    def try_take(self, cost: float, now: float) -> bool:
        """Take ``cost`` if the bucket holds it; otherwise take nothing."""
        if self.refill(now) >= cost:
            self.level -= cost
            return True
        return False

    def reserve(self, cost: float, now: float) -> float:
        """Take ``cost`` now, into debt if need be; return the seconds until it is paid for."""
        self.level = self.refill(now) - cost
        return -self.level / self.rate if self.level < 0 else 0.0

    def adjust(self, tokens: float, now: float) -> None:
        """Give back (``tokens`` > 0) or take more (< 0): reconciling an estimate."""
        self.level = min(self.capacity, self.refill(now) + tokens)

    def drain(self, now: float) -> None:
        """Forget any saved-up burst: the provider said its bucket is empty."""
        self.level = min(self.refill(now), 0.0)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until the bucket could pay ``cost`` (0 if it can now)."""
        missing = cost - self.refill(now)
        return missing / self.rate if missing > 0 else 0.0

    def until_full(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, self.capacity - self.refill(now)) / self.rate

    def set_rate(self, rate: float, capacity: float, now: float) -> None:
        """Change the rate and capacity from ``now`` on, keeping the level (capped)."""
        self.refill(now)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.level = min(self.level, self.capacity)
