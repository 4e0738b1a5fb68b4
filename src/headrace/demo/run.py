"""Running ``headrace demo``: the simulator or a real endpoint judging tone, the run
into Parquet, and the report read back from it."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import headrace as hr

from ..errors import HeadraceError
from .pipeline import DEFAULT_LIMIT, build_pipeline, paragraphs

__all__ = ["DemoRun", "report", "run_demo"]


@dataclass
class DemoRun:
    """What :func:`run_demo` did: the run's result, where it wrote, and who judged tone."""

    result: hr.RunResult
    out: Path
    paragraphs: int
    corpus_paragraphs: int
    judge: str

    @property
    def parquet_dir(self) -> Path:
        """The Parquet dataset (one ``part-*.parquet`` file per commit)."""
        return self.out / "paragraphs"


@contextlib.contextmanager
def _tone_endpoint() -> Iterator[tuple[Any, str, str]]:
    """A client for the tone step, its model name, and who it is, as words.

    ``OPENAI_BASE_URL`` (with ``OPENAI_API_KEY``; model ``HEADRACE_DEMO_MODEL``,
    default gpt-4o-mini) picks a real endpoint; otherwise a simulator runs here for
    the length of the demo, with a provider-like limit of 3,000 requests a minute.
    """
    if os.environ.get("OPENAI_BASE_URL"):
        model = os.environ.get("HEADRACE_DEMO_MODEL", "gpt-4o-mini")
        client = hr.llm.Client(rate=hr.Rate.auto())
        yield client, model, f"{model} at {os.environ['OPENAI_BASE_URL']}"
        return
    from ..sim import serve

    with serve(rpm=3000, latency_ms=150, latency_sigma=0.4, repeatable=True) as sim:
        # the sim's port changes from run to run; its answers do not
        client = hr.llm.Client(base_url=sim.url, rate=hr.Rate.auto(), identity="headrace-sim")
        yield client, "gpt-4o-mini", f"headrace sim at {sim.url} (simulated answers)"


def run_demo(
    out: str | os.PathLike[str] = "headrace-demo",
    *,
    limit: int | None = DEFAULT_LIMIT,
    fresh: bool = False,
    device: str | None = None,
    progress: bool = True,
    on_start: Callable[[int, int, str, bool], None] | None = None,
) -> DemoRun:
    """Run the demo into ``out``, resuming a run found there.

    Args:
        out: the directory for ``paragraphs/`` (Parquet) and ``run/`` (the run store).
        limit: how many paragraphs to take (``None`` or 0: all of them).
        fresh: delete ``out`` first and start again.
        device: where the embedding model runs (default: CUDA when there is a GPU).
        progress: show the progress line.
        on_start: called with (paragraphs taken, paragraphs in the corpus, judge,
            resuming) before the run starts; ``resuming`` when a run in ``out`` is
            carried on, whose finished paragraphs keep the tones they got then.

    Raises:
        HeadraceError: ``out`` holds a run made with another ``limit``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    records, total = paragraphs(limit)
    run_dir = out / "run"
    resuming = (run_dir / "run.sqlite").exists()
    with _tone_endpoint() as (client, model, judge):
        if on_start is not None:
            on_start(len(records), total, judge, resuming)
        pipeline = build_pipeline(client, model, device)
        try:
            result = hr.run(
                pipeline,
                records,
                key="id",
                sink=hr.write_parquet(out / "paragraphs", items_per_file=500),
                run_dir=run_dir,
                resume=resuming,
                progress=progress,
            )
        except hr.ResumeMismatch as exc:
            raise HeadraceError(
                f"{out} holds a demo run that differs from this one (another --limit, or "
                f"another tone judge?): run with --fresh to start again, or --out elsewhere "
                f"({exc})"
            ) from exc
    return DemoRun(result, out, len(records), total, judge)


def _rows(parquet_dir: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted(parquet_dir.glob("part-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _bar(value: float, scale: float = 40.0) -> str:
    return ("+" if value >= 0 else "-") * max(1, round(abs(value) * scale))


def report(parquet_dir: Path, *, top: int = 5) -> str:
    """What the demo found, from its Parquet output: sentiment by decade, the most
    hopeful and somber addresses, themes by era, and the tone labels."""
    rows = _rows(parquet_dir)
    if not rows:
        return "no rows written yet"
    lines = [f"{len(rows):,} paragraphs from {len({r['fileid'] for r in rows})} addresses", ""]

    by_decade: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by_decade[r["decade"]].append(r["sentiment"])
    lines.append("Sentiment by decade (VADER: mean sentence compound, -1 to +1)")
    for decade in sorted(by_decade):
        scores = by_decade[decade]
        mean = sum(scores) / len(scores)
        lines.append(f"  {decade}s  {mean:+.3f}  {_bar(mean)}  ({len(scores)} paragraphs)")

    by_speech: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_speech[r["fileid"]].append(r)
    enough = {k: v for k, v in by_speech.items() if len(v) >= 3}  # a few paragraphs at least
    ranked = sorted(enough.items(), key=lambda kv: sum(r["sentiment"] for r in kv[1]) / len(kv[1]))

    def describe(fileid: str, speech: list[dict[str, Any]]) -> str:
        mean = sum(r["sentiment"] for r in speech) / len(speech)
        first = speech[0]
        return f"  {mean:+.3f}  {first['year']}  {first['president']} ({first['party']})"

    shown = min(top, len(ranked) // 2)  # never the same address in both lists
    lines += ["", f"Most hopeful addresses (of {len(enough)} with 3+ paragraphs in the sample)"]
    lines += [describe(k, v) for k, v in reversed(ranked[len(ranked) - shown :])]
    lines += ["", "Most somber addresses"]
    lines += [describe(k, v) for k, v in ranked[:shown]]

    lines += ["", "Leading themes by era (nearest theme description by embedding)"]
    eras: dict[str, Counter[str]] = defaultdict(Counter)
    last = max(r["year"] for r in rows)
    for r in rows:
        start = (r["year"] - 1790) // 50 * 50 + 1790
        eras[f"{start}-{min(start + 49, last)}"][r["theme"]] += 1
    for era in sorted(eras):
        counts = eras[era]
        n = sum(counts.values())
        leading = ", ".join(f"{theme} {c / n:.0%}" for theme, c in counts.most_common(3))
        lines.append(f"  {era}  {leading}")

    tones = Counter(r["tone"] for r in rows)
    lines += ["", "Tone (LLM): " + ", ".join(f"{t} {c:,}" for t, c in tones.most_common())]
    return "\n".join(lines)
