"""The functions the SOTU recipe (sotu.yaml) names: plain Python, found by import path."""

from __future__ import annotations

from functools import cache
from typing import Any

from headrace.demo import THEMES


def metadata(paragraph: dict[str, Any]) -> dict[str, Any]:
    """The paragraph's fields without its text, and its length."""
    return {k: v for k, v in paragraph.items() if k != "text"} | {"chars": len(paragraph["text"])}


@cache
def _themes() -> Any:
    import numpy as np

    import headrace as hr

    vectors = hr.models.embed().run_batch(list(THEMES.values()))
    return np.asarray(vectors, dtype=np.float32)


def nearest_theme(vector: list[float]) -> dict[str, Any]:
    """The theme whose description's embedding is closest (vectors are unit length)."""
    import numpy as np

    scores = _themes() @ np.asarray(vector, dtype=np.float32)
    best = int(scores.argmax())
    return {"theme": list(THEMES)[best], "theme_score": round(float(scores[best]), 4)}


def row(parts: dict[str, Any]) -> dict[str, Any]:
    """One flat row from the fan-in of meta, sentiment, theme and tone."""
    meta, sentiment, tone = parts["meta"], parts["sentiment"], parts["tone"]
    return {
        **meta,
        "decade": meta["year"] // 10 * 10,
        "sentiment": sentiment["compound"],
        **parts["theme"],
        "tone": tone.tone,
        "tone_confidence": tone.confidence,
    }
