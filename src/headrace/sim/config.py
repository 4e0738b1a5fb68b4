"""What a simulated provider does: its limits, its latency and the faults it injects."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["FAULTS", "SimConfig"]

FAULTS: dict[str, str] = {
    "429": "a 429 with rate-limit headers, whatever the buckets hold",
    "500": "a 500 internal server error",
    "503": "a 503 service unavailable",
    "hang": "no answer: the request hangs until the client gives up",
    "reset": "the connection is closed without an answer",
    "malformed": "a 200 whose body is not JSON",
    "truncated": "a 200 whose body stops halfway and the connection closes",
    "invalid": "structured output (json_schema) with a value the schema refuses",
    "drop": "a packed answer that leaves out one item's result",
    "shuffle": "a packed answer whose results come in reverse order",
}
"""The faults the simulator injects, by name, and what each one looks like to a client."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How ``headrace sim`` behaves.

    Args:
        rpm: requests per minute the provider accepts (``None``: no limit).
        tpm: tokens per minute (prompt plus completion; ``None``: no limit).
        burst: requests the request bucket holds; default one second's worth of ``rpm``.
        token_burst: tokens the token bucket holds; default one second's worth of ``tpm``.
        latency_ms: the time to answer, in milliseconds (the median when ``latency_sigma`` > 0).
        latency_sigma: the sigma of a lognormal latency around ``latency_ms`` (0: fixed).
        repeatable: draw each request's latency from a hash of its body, so that a
            rerun sees the same latencies.
        concurrency: requests served at once; one more is answered 429 (``None``: no cap).
        faults: the probability of each fault in :data:`FAULTS` per accepted request.
        storm_every: seconds between 429 storms (``None``: no storms).
        storm_for: seconds each storm lasts; every request in it is answered 429.
        hang_s: how long a hung request waits before the server gives up on it.
        seed: the seed of the fault and latency draws.
        embedding_dim: the length of an embedding vector when the request does not say.
        batch_turnaround_s: how long a batch takes from its creation to its end (its
            requests finish one after the other over that time); the median when
            ``batch_turnaround_sigma`` > 0.
        batch_turnaround_sigma: the sigma of a lognormal turnaround around
            ``batch_turnaround_s``, drawn for each batch (0: every batch the same).
        batch_error_rate: the share of a batch's requests answered with an error
            (a 500 ``server_error`` in the batch's error file or results).
        batch_finish_share: the share of a batch's requests finished by its end; below
            1 the batch expires at its turnaround with only those done (billed).
        batch_queue_tokens: the input tokens of one model the provider holds enqueued in
            unfinished batches; a batch that would pass it fails at validation with
            ``token_limit_exceeded`` (``None``: no limit).
        batch_lose_creates: the answers of this many batch creates, the first ones, are
            lost: the batch exists, but the connection drops before the answer.
        flex_latency_ms: the time a flex request (``"service_tier": "flex"``) takes to
            answer (``None``: as ``latency_ms``; the lognormal sigma applies too).
        flex_refusal_rate: the share of flex requests refused for lack of capacity, at
            once and unbilled.
        flex_refusal_status: how a refusal looks: ``429`` (OpenAI's "resource
            unavailable") or ``498`` (Groq's "capacity exceeded").
        flex_models: the models that have a flex tier, comma-separated (``None``: all);
            a flex request for another is answered 400, as OpenAI and Azure do.
    """

    rpm: float | None = None
    tpm: float | None = None
    burst: float | None = None
    token_burst: float | None = None
    latency_ms: float = 0.0
    latency_sigma: float = 0.0
    repeatable: bool = False
    concurrency: int | None = None
    faults: Mapping[str, float] = field(default_factory=dict)
    storm_every: float | None = None
    storm_for: float = 1.0
    hang_s: float = 600.0
    seed: int = 0
    embedding_dim: int = 64
    batch_turnaround_s: float = 2.0
    batch_turnaround_sigma: float = 0.0
    batch_error_rate: float = 0.0
    batch_finish_share: float = 1.0
    batch_queue_tokens: int | None = None
    batch_lose_creates: int = 0
    flex_latency_ms: float | None = None
    flex_refusal_rate: float = 0.0
    flex_refusal_status: int = 429
    flex_models: str | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "burst", "token_burst", "storm_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"sim {name} must be > 0, got {value!r}")
        if self.latency_ms < 0 or self.latency_sigma < 0:
            raise ValueError("sim latency_ms and latency_sigma must be >= 0")
        if not self.batch_turnaround_sigma >= 0:
            raise ValueError("sim batch_turnaround_sigma must be >= 0")
        if not self.batch_turnaround_s >= 0 or self.batch_lose_creates < 0:
            raise ValueError("sim batch_turnaround_s and batch_lose_creates must be >= 0")
        if not 0 <= self.batch_error_rate <= 1 or not 0 <= self.batch_finish_share <= 1:
            raise ValueError("sim batch_error_rate and batch_finish_share must lie in 0..1")
        if self.batch_queue_tokens is not None and self.batch_queue_tokens < 1:
            raise ValueError(f"sim batch_queue_tokens must be >= 1, got {self.batch_queue_tokens}")
        if self.flex_latency_ms is not None and not self.flex_latency_ms >= 0:
            raise ValueError(f"sim flex_latency_ms must be >= 0, got {self.flex_latency_ms!r}")
        if not 0 <= self.flex_refusal_rate <= 1:
            raise ValueError(f"sim flex_refusal_rate must be in 0..1, not {self.flex_refusal_rate}")
        if self.flex_refusal_status not in (429, 498):
            raise ValueError(
                f"sim flex_refusal_status must be 429 or 498, got {self.flex_refusal_status!r}"
            )
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"sim concurrency must be >= 1, got {self.concurrency!r}")
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sim fault(s) {sorted(unknown)}; faults are {list(FAULTS)}")
        if any(not 0 <= p <= 1 for p in self.faults.values()) or sum(self.faults.values()) > 1:
            raise ValueError("sim fault rates must lie in 0..1 and add up to at most 1")

    @classmethod
    def from_text(cls, text: str) -> SimConfig:
        """``"rpm=6000,latency_ms=150,fault_503=0.05"`` (``headrace bench --sim``) as a config:
        this class's numeric settings by name, and ``fault_KIND=RATE`` for a fault.

        Raises:
            ValueError: an unknown setting, a value that is not a number, or a bad value.
        """
        numbers = {"rpm", "tpm", "burst", "token_burst", "latency_ms", "latency_sigma"}
        numbers |= {"storm_every", "storm_for", "hang_s", "batch_turnaround_s"}
        numbers |= {"batch_turnaround_sigma"}
        numbers |= {"batch_error_rate", "batch_finish_share", "flex_latency_ms"}
        numbers |= {"flex_refusal_rate"}
        whole = {"concurrency", "seed", "embedding_dim", "batch_queue_tokens"}
        whole |= {"batch_lose_creates", "flex_refusal_status"}
        values: dict[str, Any] = {}
        faults: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            known_name = name in numbers | whole | {"repeatable"} or name.startswith("fault_")
            if not sep or not known_name:
                known = ", ".join(sorted(numbers | whole | {"repeatable", "fault_KIND"}))
                raise ValueError(f"sim setting {part!r}: expected NAME=VALUE, NAME one of {known}")
            try:
                if name.startswith("fault_"):
                    faults[name.removeprefix("fault_")] = float(value)
                elif name == "repeatable":
                    values[name] = value.strip().lower() in ("1", "true", "yes")
                else:
                    values[name] = int(value) if name in whole else float(value)
            except ValueError:
                raise ValueError(f"sim setting {name}: {value!r} is not a number") from None
        return cls(**values, faults=faults)

    @property
    def request_burst(self) -> float | None:
        """The request bucket's size, or ``None`` without an rpm limit."""
        if self.rpm is None:
            return None
        return self.burst if self.burst is not None else max(1.0, self.rpm / 60)

    @property
    def tokens_burst(self) -> float | None:
        """The token bucket's size, or ``None`` without a tpm limit."""
        if self.tpm is None:
            return None
        return self.token_burst if self.token_burst is not None else max(1.0, self.tpm / 60)

    def turnaround(self, rng: random.Random) -> float:
        """One batch's turnaround in seconds (a draw, with ``batch_turnaround_sigma``)."""
        if self.batch_turnaround_sigma == 0:
            return self.batch_turnaround_s
        return self.batch_turnaround_s * math.exp(rng.gauss(0.0, self.batch_turnaround_sigma))

    def latency_s(self, rng: random.Random, flex: bool = False) -> float:
        """One draw of the latency in seconds (of a flex request with ``flex``)."""
        flex_ms = self.flex_latency_ms if flex else None
        median = (self.latency_ms if flex_ms is None else flex_ms) / 1e3
        if self.latency_sigma == 0 or median == 0:
            return median
        return median * math.exp(rng.gauss(0.0, self.latency_sigma))

    def latency_of(self, body: Any) -> float:
        """The latency a ``repeatable`` simulator gives the request ``body`` (its parsed JSON)."""
        seed = int.from_bytes(hashlib.sha256(orjson.dumps(("latency", body))).digest()[:8], "big")
        return self.latency_s(random.Random(seed), flex=is_flex(body))

    def pick_fault(self, rng: random.Random) -> str | None:
        """The fault this request gets, or ``None``."""
        if not self.faults:
            return None
        draw = rng.random()
        for name, rate in self.faults.items():
            if draw < rate:
                return name
            draw -= rate
        return None


def is_flex(body: Any) -> bool:
    """Whether a request body asks for the flex tier."""
    return isinstance(body, dict) and body.get("service_tier") == "flex"


def parse_faults(values: list[str]) -> dict[str, float]:
    """``["503=0.05", "hang=0.01"]`` from the command line, as a mapping.

    Raises:
        ValueError: a value not of the form ``KIND=RATE``.
    """
    faults: dict[str, float] = {}
    for value in values:
        name, sep, rate = value.partition("=")
        try:
            faults[name.strip()] = float(rate)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--fault takes KIND=RATE (e.g. 503=0.05), got {value!r}")
    return faults
