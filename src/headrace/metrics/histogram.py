"""A latency histogram: log-bucketed, O(1) per record with fixed memory, mergeable
(a ten-million-item run costs the memory of a small one)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Histogram"]

_FLOOR_S = 1e-7
_GROWTH = 1.02  # each bucket is 2% wider than the one before: quantiles within ~1%
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = int(math.log(1e4 / _FLOOR_S) / _LOG_GROWTH) + 2  # 100 ns .. ~3 hours


class Histogram:
    """A fixed-size histogram of durations in seconds, with ~1% relative error."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Add one duration."""
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds <= _FLOOR_S:
            self.counts[0] += 1
        else:
            index = int(math.log(seconds / _FLOOR_S) / _LOG_GROWTH) + 1
            self.counts[index if index < _BUCKETS else _BUCKETS - 1] += 1

    def quantile(self, q: float) -> float:
        """Return the ``q`` quantile (0..1) in seconds; 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                if index == 0:
                    return _FLOOR_S
                # the geometric middle of the bucket, never above the largest sample
                middle: float = _FLOOR_S * _GROWTH ** (index - 0.5)
                return min(self.max, middle)
        return self.max

    @property
    def mean(self) -> float:
        """The mean duration in seconds; 0.0 when empty."""
        return self.total / self.count if self.count else 0.0

    def sparse(self) -> dict[str, Any]:
        """The histogram as plain data: count, sum, max and the counts of the buckets
        that have any (how the run store keeps it)."""
        buckets = {str(i): n for i, n in enumerate(self.counts) if n}
        return {"n": self.count, "sum": self.total, "max": self.max, "b": buckets}

    @classmethod
    def from_sparse(cls, data: Any) -> Histogram:
        """A histogram from :meth:`sparse`'s data, read back from a store: what is not
        a bucket of a count is left out."""
        histogram = cls()
        if not isinstance(data, dict):
            return histogram
        buckets = data.get("b")
        for index, n in (buckets if isinstance(buckets, dict) else {}).items():
            if isinstance(index, str) and index.isdigit() and type(n) is int and n > 0:
                histogram.counts[min(int(index), _BUCKETS - 1)] += n
                histogram.count += n
        for name in ("sum", "max"):
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                setattr(histogram, "total" if name == "sum" else "max", float(value))
        return histogram

    def count_at_most(self, seconds: float) -> int:
        """How many durations were at most ``seconds`` (to the histogram's ~2% buckets)."""
        if seconds < _FLOOR_S:
            return 0
        last = min(_BUCKETS - 1, int(math.log(seconds / _FLOOR_S) / _LOG_GROWTH + 1e-9))
        return sum(self.counts[: last + 1])

    def minus(self, earlier: Histogram) -> Histogram:
        """The durations recorded since ``earlier`` (a past state of this histogram)."""
        since = Histogram()
        since.counts = [max(0, a - b) for a, b in zip(self.counts, earlier.counts, strict=True)]
        since.count = sum(since.counts)
        since.total = max(0.0, self.total - earlier.total)
        since.max = self.max
        return since

    def milliseconds(self) -> dict[str, float]:
        """The mean, median, p95, p99 and max in milliseconds (0.0 when empty)."""
        return {
            "mean": round(self.mean * 1e3, 4),
            "p50": round(self.quantile(0.50) * 1e3, 4),
            "p95": round(self.quantile(0.95) * 1e3, 4),
            "p99": round(self.quantile(0.99) * 1e3, 4),
            "max": round(self.max * 1e3, 4),
        }

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s durations (histograms of several workers make one)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
