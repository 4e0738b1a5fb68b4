"""What an LLM step measures: requests, tokens, cost, repairs, packing, streaming."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..metrics import Histogram

if TYPE_CHECKING:
    from ..metrics import StepMetrics
    from .prices import Price
    from .replies import Reply

__all__ = ["Costs", "LLMStats", "llm_stats"]


@dataclass(slots=True, eq=False)
class LLMStats:
    """Counters of one LLM step in one run (``metrics.step(name).llm``).

    Attributes:
        model: the provider's model name.
        requests: HTTP requests that got an answer (retries and repairs included).
        prompt_tokens: prompt tokens the provider counted (its ``usage``).
        completion_tokens: completion tokens the provider counted.
        cost_usd: what those tokens cost, or ``None`` for a model with no price.
        repairs: repair turns sent after an answer failed validation.
        partial: answers accepted with optional fields dropped (``allow_partial``).
        packed_requests: requests that carried more than one item (``pack=``).
        packed_items: items those requests carried.
        solo_retries: items of a packed request sent again alone (dropped or mangled).
        tokens_saved: estimated prompt tokens packing saved over one request per item.
        first_token: time to the first token of streamed calls.
        stream_tokens: completion tokens of streamed calls; ``stream_s`` is their
            time from the first token to the last.
        batch_requests: requests answered from the provider's batches (the batch tier).
        flex_requests: requests the provider served on its flex tier; ``flex_refusals``
            the capacity refusals drawn, ``flex_fallbacks`` the requests sent online
            after too many (``FlexTier(fallback="online")``).
        online_cost_usd: what the batch and flex requests would have cost online.
        rescued: requests the auto tier took out of batches (cancelled as the deadline
            neared) and sent online.
        batch_cost_usd, flex_cost_usd: what the requests answered from batches and on
            flex cost (``cost_usd`` less both: the online requests').
        deadline_left_s, deadline_slack_s, in_batches: on the auto tier, as its watchdog
            last looked: the time to the run's deadline, the time left before what is
            in batches must be sent online (the rescue at 0), and the requests in
            batches (``None``, ``None``, 0 without a deadline).
        price_source: where the model's price came from (``"genai-prices 0.2.5"``,
            ``"your prices"``, ``"built-in prices"``).
    """

    model: str
    priced: bool = True
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    repairs: int = 0
    partial: int = 0
    packed_requests: int = 0
    packed_items: int = 0
    solo_retries: int = 0
    tokens_saved: int = 0
    first_token: Histogram = field(default_factory=Histogram)
    stream_tokens: int = 0
    stream_s: float = 0.0
    batch_requests: int = 0
    flex_requests: int = 0
    flex_refusals: int = 0
    flex_fallbacks: int = 0
    online_cost_usd: float = 0.0
    rescued: int = 0
    batch_cost_usd: float = 0.0
    flex_cost_usd: float = 0.0
    deadline_left_s: float | None = None
    deadline_slack_s: float | None = None
    in_batches: int = 0
    price_source: str = ""

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens a second while streaming, first token to last."""
        return self.stream_tokens / self.stream_s if self.stream_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counters as plain data."""
        data: dict[str, Any] = {
            "model": self.model,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6) if self.priced else None,
            "price_source": self.price_source,
            "repairs": self.repairs,
            "partial": self.partial,
        }
        if self.packed_requests:
            data["packing"] = {
                "requests": self.packed_requests,
                "items": self.packed_items,
                "solo_retries": self.solo_retries,
                "tokens_saved": self.tokens_saved,
            }
        if self.batch_requests or self.rescued:
            data["batch"] = {
                "requests": self.batch_requests,
                "cost_usd": round(self.batch_cost_usd, 6) if self.priced else None,
                "rescued": self.rescued,
                "online_cost_usd": round(self.online_cost_usd, 6) if self.priced else None,
            }
        if self.flex_requests or self.flex_refusals:
            data["flex"] = {
                "requests": self.flex_requests,
                "cost_usd": round(self.flex_cost_usd, 6) if self.priced else None,
                "refusals": self.flex_refusals,
                "sent_online": self.flex_fallbacks,
                "online_cost_usd": round(self.online_cost_usd, 6) if self.priced else None,
            }
        if self.deadline_left_s is not None:
            data["auto"] = {
                "deadline_left_s": round(self.deadline_left_s, 3),
                "slack_s": round(self.deadline_slack_s or 0.0, 3),
                "in_batches": self.in_batches,
            }
        if self.first_token.count:
            data["stream"] = {
                "first_token_ms_p50": round(self.first_token.quantile(0.5) * 1e3, 3),
                "first_token_ms_p95": round(self.first_token.quantile(0.95) * 1e3, 3),
                "tokens_per_s": round(self.tokens_per_s, 1),
            }
        return data

    def summary(self) -> str:
        """One line for the run summary."""
        cost = f"${self.cost_usd:.4f}" if self.priced else "unpriced"
        if self.priced and self.price_source:
            cost += f" ({self.price_source})"
        line = (
            f"{self.model}: {self.requests:,} requests, {self.prompt_tokens:,} + "
            f"{self.completion_tokens:,} tokens, {cost}"
        )
        if self.repairs or self.partial:
            line += f"; repairs {self.repairs:,}, partial {self.partial:,}"
        if self.packed_requests:
            line += (
                f"; packed {self.packed_items:,} items in {self.packed_requests:,} requests "
                f"(~{self.tokens_saved:,} tokens saved), {self.solo_retries:,} sent again alone"
            )
        if self.batch_requests or self.rescued:
            line += f"; {self.batch_requests:,} from batches" + (
                f" (online: ${self.online_cost_usd:.4f})" if self.priced else ""
            )
            if self.rescued:
                line += f", {self.rescued:,} taken out of batches and sent online"
        if self.flex_requests or self.flex_refusals:
            line += (
                f"; {self.flex_requests:,} on flex, {self.flex_refusals:,} refused for "
                f"capacity, {self.flex_fallbacks:,} sent online"
            ) + (f" (all online: ${self.online_cost_usd:.4f})" if self.priced else "")
        if self.priced and (self.batch_cost_usd or self.flex_cost_usd):
            online = max(self.cost_usd - self.batch_cost_usd - self.flex_cost_usd, 0.0)
            line += (
                f"; spent ${self.batch_cost_usd:.4f} on batches, ${self.flex_cost_usd:.4f} "
                f"on flex, ${online:.4f} online"
            )
        if self.first_token.count:
            line += (
                f"; first token p50 {self.first_token.quantile(0.5) * 1e3:.1f} ms, "
                f"{self.tokens_per_s:,.0f} tokens/s"
            )
        return line


class Costs:
    """One connection's cost accounting: a request's expected cost held in the run's
    budget before it is sent, its real tokens and cost counted when it answers.

    The expected completion is the running mean of the model's answers so far
    (``max_tokens`` before the first). A request asking for the flex tier
    (``"service_tier": "flex"``) is held at the flex price, and an answer is paid for
    at the price of the tier its provider says served it (its ``service_tier``).

    Args:
        price_of: a model's price on a tier (``"online"`` or ``"flex"``).
    """

    def __init__(self, price_of: Callable[[str, str], Price | None]) -> None:
        self.price_of = price_of
        self.completion: dict[str, float] = {}  # mean completion tokens per model

    def expected(self, model: str, counted: int, body: dict[str, Any]) -> tuple[int, float]:
        """The expected tokens and cost of one request, to hold in the run's budget."""
        ceiling = body.get("max_completion_tokens") or body.get("max_tokens")
        expected = self.completion.get(model, float(ceiling) if isinstance(ceiling, int) else 0.0)
        price = self.price_of(model, _tier(body.get("service_tier")))
        tokens = counted + round(expected)
        usd = price.cost(counted, round(expected)) if price is not None else 0.0
        return tokens, usd

    def count(
        self, stats: LLMStats | None, model: str, reply: Reply, asked: str = "online"
    ) -> tuple[int, float]:
        """Count a reply's tokens and cost (into ``stats``) at the price of the tier that
        served it (the tier ``asked`` for, where the answer does not say); return them."""
        prompt, completion = reply.usage
        served = _tier(reply.body.get("service_tier", asked))
        price = self.price_of(model, served)
        usd = price.cost(prompt, completion) if price is not None else 0.0
        if served == "flex" and stats is not None:
            stats.flex_requests += 1
            stats.flex_cost_usd += usd
            online = self.price_of(model, "online")
            stats.online_cost_usd += online.cost(prompt, completion) if online else 0.0
        mean = self.completion.get(model)
        self.completion[model] = completion if mean is None else 0.9 * mean + 0.1 * completion
        if stats is not None:
            stats.requests += 1
            stats.prompt_tokens += prompt
            stats.completion_tokens += completion
            stats.cost_usd += usd
            if reply.first_token_s is not None:
                stats.first_token.record(reply.first_token_s)
                stats.stream_tokens += completion
                stats.stream_s += reply.stream_s
        return prompt + completion, usd


def _tier(service_tier: Any) -> str:
    """The tier a request's or an answer's ``service_tier`` names, as priced here."""
    return "flex" if service_tier == "flex" else "online"


def llm_stats(metrics: StepMetrics) -> LLMStats:
    """The LLM counters of ``metrics`` (an LLM step's, made when it was bound)."""
    stats = metrics.llm
    assert isinstance(stats, LLMStats), f"step {metrics.name!r} keeps no LLM counters"
    return stats
