"""Sending each item to the model it needs: a ready complexity selector for
``hr.route``, and a cascade that asks a bigger model only when a smaller one's
answer is not good enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._types import Handler
from ..engine.context import binds
from ..errors import PipelineError, StepFailed
from ..limits.budget import run_stopped
from ..pipeline.fingerprint import code_hash
from ..pipeline.step import FILTERED, Step, as_step
from .prompts import record_fields, select_fields

if TYPE_CHECKING:
    from ..engine.context import RunContext

__all__ = ["Cascade", "KEYWORDS", "cascade", "complexity"]

KEYWORDS = (
    "analyse",
    "analyze",
    "compare",
    "contrast",
    "derive",
    "evaluate",
    "explain why",
    "justify",
    "prove",
    "reason",
    "step by step",
    "trade-off",
)
"""Words that mark a request needing more reasoning (the default of :func:`complexity`)."""

_CODE = re.compile(r"```|\bdef \w+\(|\bclass \w+[:(]|\bimport \w+|;\s*$|\{\s*$|=>|\bSELECT\b", re.M)


def complexity(
    fields: Sequence[str] | None = None,
    *,
    long: int = 1200,
    keywords: Sequence[str] = KEYWORDS,
    code: bool = True,
    simple: str = "simple",
    complex: str = "complex",
) -> Callable[[Any], str]:
    """A selector for :func:`headrace.route`: ``"complex"`` for long text, reasoning
    keywords or code, ``"simple"`` otherwise.

    ``hr.route(hr.llm.complexity(["text"]), {"simple": fast, "complex": smart})``

    Args:
        fields: the record's fields to read (default: all; a string record is its text).
        long: text of at least this many characters is complex.
        keywords: any of these words (case-insensitive) makes the text complex.
        code: code (a fenced block, ``def``, ``class``, ``import``, braces) makes it complex.
        simple: the label of a simple item.
        complex: the label of a complex item.
    """
    words = tuple(k.lower() for k in keywords)

    def select(record: Any) -> str:
        values = select_fields(record_fields(record), fields).values()
        text = " ".join(v if isinstance(v, str) else str(v) for v in values)
        if len(text) >= long:
            return complex
        lowered = text.lower()
        if any(word in lowered for word in words):
            return complex
        if code and _CODE.search(text):
            return complex
        return simple

    return select


class Cascade(Step[Any, Any]):
    """Tries steps in order until one's answer is accepted; see :func:`cascade`."""

    def __init__(
        self, stages: Sequence[Step[Any, Any]], accept: Callable[[Any], bool], name: str
    ) -> None:
        self.stages = tuple(stages)
        self.accept = accept
        self.name = name

    def children(self) -> tuple[Step[Any, Any], ...]:
        return self.stages

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "cascade",
            "name": self.name,
            "stages": [stage.fingerprint for stage in self.stages],
            "accept": code_hash(self.accept),
        }


def cascade(
    stages: Sequence[Step[Any, Any] | Callable[[Any], Any]],
    *,
    accept: Callable[[Any], bool],
    name: str = "cascade",
) -> Cascade:
    """A step that asks each stage in turn and keeps the first accepted answer.

    ``hr.llm.cascade([fast, smart], accept=lambda out: out.confidence >= 0.9)``
    calls ``smart`` only for the items whose ``fast`` answer ``accept`` refuses (or
    that ``fast`` failed). The last stage's answer is kept whatever it is. The
    summary counts, per stage, the items it answered and those it passed on.

    Args:
        stages: two or more steps taking the same input and giving the same kind of output.
        accept: a function of a stage's output: keep it (true) or ask the next stage.
        name: the cascade's name in metrics.
    """
    if len(stages) < 2:
        raise PipelineError("cascade needs at least two stages")
    if not callable(accept):
        raise PipelineError("cascade accept= must be a function of a stage's output")
    return Cascade([as_step(s, after=name) for s in stages], accept, name)


@binds(Cascade)
def bind_cascade(step: Cascade, ctx: RunContext) -> Handler:
    """A cascade in one run: each stage bound once, tried in order until one's answer
    is accepted."""
    metrics = ctx.metrics_for(step.name, "cascade")
    stages = [(stage.name, ctx.bind(stage)) for stage in step.stages]
    counts = metrics.branches
    accept, name = step.accept, step.name
    last = len(stages) - 1

    def count(label: str) -> None:
        counts[label] = counts.get(label, 0) + 1

    async def handle(value: Any) -> Any:
        metrics.calls += 1
        for position, (stage, handler) in enumerate(stages):
            try:
                out = await handler(value)
            except StepFailed as failure:
                if position == last or run_stopped(failure) is not None:
                    metrics.errors += 1
                    raise
                count(f"{stage} failed")
                continue
            if position < last and out is not FILTERED:
                try:
                    accepted = accept(out)
                except Exception as exc:
                    metrics.errors += 1
                    raise StepFailed(name, exc) from exc
                if not accepted:
                    count(f"{stage} not accepted")
                    continue
            count(f"answered by {stage}")
            metrics.items += 1
            return out
        raise AssertionError("unreachable: the last stage returns or raises")

    return handle
