"""``--dry-run``: what a recipe would run, and what its LLM calls would cost; no call is made.

The estimate is an upper bound built from the source itself:

- items: the source's count (a scan of the file);
- requests per LLM node: one per item (one per ``pack`` items when packed; one per
  ``batch`` for embeddings); a node behind a condition, a router or a filter runs
  on at most every item, and is marked *at most*;
- prompt tokens: the node's prompt rendered for the first ``sample`` records, at
  four characters a token. A node whose input is another node's output is
  estimated from the source record in its place, which the plan says;
- completion tokens: the node's ``max_tokens``, or :data:`ASSUMED_COMPLETION`, per item;
- cost: the model's price on the node's tier (online, flex or batch) in the client's
  table (unpriced models show no cost).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..io.records import BadRecord
from ..limits.usage import estimate_tokens
from ..pipeline.graph import names_of
from ..pipeline.keep import WithInput
from ..report.record import read_estimate
from .schema import RecipeSpec

if TYPE_CHECKING:
    from ..io.records import Source
    from ..pipeline.step import Step
    from .build import Built

__all__ = ["ASSUMED_COMPLETION", "LoadedRecipe", "describe"]


class LoadedRecipe(Protocol):
    """What a plan reads of a loaded :class:`~headrace.recipe.Recipe` (whose ``plan()``
    calls :func:`describe`: so this module names only what it needs of it)."""

    path: Path
    name: str
    overrides: tuple[str, ...]
    built: Built
    spec: RecipeSpec
    pipeline: Step[Any, Any]

    def source(self) -> Source:
        """What the recipe reads."""


ASSUMED_COMPLETION = 200
"""Completion tokens per request assumed for a node without ``max_tokens``."""


def _kinds(spec: RecipeSpec) -> dict[str, str]:
    """Each node's kind and what it names, as the plan shows it."""
    shown: dict[str, str] = {}
    for node in spec.nodes:
        kind = node.kind
        if node.llm is not None:
            detail = f"{node.llm.task} {node.llm.model}"
            detail += f" pack {node.llm.pack}" if node.llm.pack > 1 else ""
        elif node.model is not None:
            detail = next(k for k in ("embed", "sentiment", "pipeline") if getattr(node.model, k))
        elif node.map is not None:
            detail = f"over {node.map.over or 'input'}, on_error {node.map.on_error}"
        elif node.route is not None:
            detail = f"on {node.route.on}"
        else:
            detail = str(getattr(node, kind))
        shown[str(node.id)] = f"{kind} {detail}"
    return shown


def _sample(recipe: LoadedRecipe, size: int, given: Any = None) -> tuple[int | None, list[Any]]:
    try:
        source = given if given is not None else recipe.source()
    except Exception:
        return None, []
    records: list[Any] = []
    total = 0
    for entry in source.records():
        if isinstance(entry, BadRecord):
            continue
        total += 1
        if len(records) < size:
            records.append(entry[1])
    return total, records


def _prompt_tokens(step: Any, records: list[Any], context: bool) -> int | None:
    """Mean prompt tokens of the step's request over ``records`` (``None``: none rendered)."""
    counts = []
    for record in records:
        value = {**names_of(record), "record": record, "input": record} if context else record
        try:
            counts.append(estimate_tokens(step.request(value)))
        except Exception:
            continue
    return math.ceil(sum(counts) / len(counts)) if counts else None


def _llm_step(step: Any) -> Any:
    """The LLM step inside a node's step (under ``keep_input:``), or the step itself."""
    while isinstance(step, WithInput):
        step = step.inner
    return step


def describe(
    recipe: LoadedRecipe,
    *,
    sample: int = 20,
    source: Any = None,
    source_text: str | None = None,
    sink_text: str | None = None,
    run_dir: Path | None = None,
) -> str:
    """The plan of ``recipe`` as text (see the module's notes). ``source`` (shown as
    ``source_text``) and ``sink_text`` are what the command line put in place of the
    recipe's own (``--input``, ``--output``). A pilot's figures kept in ``run_dir`` by
    ``headrace estimate`` replace the upper bounds."""
    from ..llm import Embed, LLMStep, Transduce

    graph = recipe.built.graph
    spec = recipe.spec
    lines = [f"recipe {recipe.name} ({recipe.path})"]
    total, records = _sample(recipe, sample, source)
    count = f", {total:,} items" if total is not None else ", not readable now"
    if source is not None:
        shown = source_text or type(source).__name__
        lines.append(f"source: {shown} (in place of the recipe's){count}")
    elif spec.source is not None:
        lines.append(f"source: {spec.source.model_dump(exclude_none=True)}{count}")
    if sink_text is not None:
        lines.append(f"sink:   {sink_text} (in place of the recipe's)")
    elif spec.sink is not None:
        lines.append(f"sink:   {spec.sink.model_dump(exclude_none=True, exclude_defaults=True)}")
    run = spec.run.model_dump(exclude_defaults=True)
    lines.append(f"run:    {run or 'defaults'}")
    if recipe.overrides:
        lines.append(f"set:    {', '.join(recipe.overrides)}")
    lines.append("")
    lines.append("nodes, in order:")
    kinds = _kinds(spec)
    conditional: set[str] = set()
    for node_id in graph.order:
        incoming = graph.parents[node_id]
        if any(e.when is not None or e.branch is not None for e in incoming) or any(
            graph.nodes[a].keep is not None or conditional & {a} for a in graph.ancestors[node_id]
        ):
            conditional.add(node_id)
        kind = kinds.get(node_id, "")
        after = ", ".join(
            e.source
            + (f" when {e.when.source}" if e.when is not None and hasattr(e.when, "source") else "")
            + (f" on {e.branch}" if e.branch is not None else "")
            for e in incoming
        )
        lines.append(f"  {node_id:<14} {kind:<36} {'after ' + after if after else 'first'}")
    lines.append("")
    items = total if total is not None else 0
    estimate = ["estimate (upper bounds; no call made):"]
    requests = tokens = 0
    dollars = 0.0
    priced_all = True
    for node_id in graph.order:
        step = _llm_step(graph.nodes[node_id].step)
        if not isinstance(step, LLMStep):
            continue
        if isinstance(step, Transduce):
            per = step.pack
        elif isinstance(step, Embed):
            per = step.batch.max_size if step.batch is not None else 1
        else:
            per = 1
        calls = math.ceil(items / per)
        prompt = _prompt_tokens(step, records, graph.nodes[node_id].input == "context")
        derived = bool(graph.parents[node_id]) and graph.nodes[node_id].input != "context"
        completion = (
            0
            if isinstance(step, Embed)
            else (getattr(step, "max_tokens", None) or ASSUMED_COMPLETION)
        )
        prompt_total = (prompt or 0) * items
        completion_total = completion * items
        price = step.client.price(step.model, step.tier_name)  # the tier it runs on
        cost = price.cost(prompt_total, completion_total) if price is not None else None
        requests += calls
        tokens += prompt_total + completion_total
        if cost is None:
            priced_all = False
        else:
            dollars += cost
        notes = []
        if node_id in conditional:
            notes.append("at most: behind a condition")
        if prompt is None:
            notes.append("prompt not renderable from a source record")
        elif derived:
            notes.append("prompt estimated from the source record")
        cost_text = f"${cost:,.4f}" if cost is not None else "unpriced"
        estimate.append(
            f"  {node_id:<14} {calls:>9,} requests  {prompt_total:>11,} prompt + "
            f"{completion_total:>9,} completion tokens  {cost_text}  ({step.model_name})"
            + (f"  [{'; '.join(notes)}]" if notes else "")
        )
    estimate.extend(_pack_warnings(recipe))
    measured = read_estimate(run_dir)
    if measured is not None:
        return "\n".join(lines + _measured(measured, run_dir))
    if len(estimate) == 1:
        estimate.append("  no LLM nodes: no requests to a provider")
    else:
        cost_total = f"${dollars:,.4f}" + ("" if priced_all else " (plus unpriced models)")
        estimate.append(f"  total: {requests:,} requests, {tokens:,} tokens, {cost_total}")
        estimate.append(
            f"  (completion at max_tokens, or {ASSUMED_COMPLETION} tokens an item where unset)"
        )
    return "\n".join(lines + estimate)


def _measured(
    measured: dict[str, dict[str, tuple[float, float, float] | None]], run_dir: Path | None
) -> list[str]:
    """The figures of the pilot ``headrace estimate`` kept in ``run_dir``."""
    lines = [f"estimate measured by a pilot (headrace estimate, {run_dir}/estimate.json):"]
    for tier, figures in measured.items():
        cost, wall = figures.get("cost_usd"), figures.get("wall_s")
        shown = " / ".join(f"${c:,.4f}" for c in cost) if cost else "unpriced"
        took = " / ".join(f"{w:,.0f} s" for w in wall) if wall else "?"
        lines.append(f"  {tier:<7} cost {shown}   wall {took}   (p10 / p50 / p90)")
    return lines


def _pack_warnings(recipe: LoadedRecipe) -> list[str]:
    """A warning for each packed LLM node the run's window cannot keep full: ``pack``
    items in each of ``concurrency`` requests need that many items in flight."""
    from ..engine.runner import default_window
    from ..llm import Transduce

    graph = recipe.built.graph
    window = recipe.spec.run.concurrency or default_window(recipe.pipeline)
    warnings = []
    for node_id in graph.order:
        step = _llm_step(graph.nodes[node_id].step)
        if not isinstance(step, Transduce) or step.pack < 2:
            continue
        needed = step.pack * step.concurrency
        if window < needed:
            full = max(1, window // step.pack)
            warnings.append(
                f"  warning: {node_id}: pack {step.pack} x concurrency {step.concurrency} "
                f"needs {needed:,} items in flight to fill every request, but the window "
                f"(run.concurrency) is {window:,}: at most {full:,} full packs at once; "
                f"set run.concurrency to {needed:,}, or the node's concurrency to {full:,}"
            )
    return warnings
