"""``hr.models.sentiment()``: VADER sentiment per sentence and per document.

VADER scores a sentence's ``compound`` polarity in [-1, 1]. Its authors advise
scoring a long text sentence by sentence: over a whole paragraph the compound
saturates towards ±1. So a document's ``compound`` here is the mean of its
sentences' compounds, and ``positive``/``negative``/``neutral`` are the shares of
its sentences past VADER's ±0.05 thresholds.
"""

from __future__ import annotations

import re
from typing import Any

from ..pipeline.step import Batch
from .model_step import ModelStep, load_once

__all__ = ["Sentiment", "sentiment", "split_sentences"]

THRESHOLD = 0.05
"""VADER's own cut-off: a compound of at least +0.05 is positive, at most -0.05 negative."""

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.``, ``!`` or ``?`` (and any closing quote
    or bracket) where a capital or a digit follows."""
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        sentences.append(text[start : end.end()].strip())
        start = end.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


class Sentiment(ModelStep):
    """A step that scores each text's sentiment with VADER (its lexicon ships in
    ``vaderSentiment``; installed with ``headrace[models]``).

    The output is ``{"compound", "positive", "negative", "neutral", "sentences"}``
    (plus ``by_sentence``): the mean sentence compound in [-1, 1], the shares of
    positive, negative and neutral sentences, and their count.

    Args:
        field: read the text from this field of a record (default: the item is the text).
        sentences: also return each sentence's text and compound (``by_sentence``).
        name: the step's name in metrics and errors.
        version: bump it to mark a change the fingerprint cannot see.
    """

    needs = ("vaderSentiment",)

    def __init__(
        self,
        *,
        field: str | None = None,
        sentences: bool = False,
        name: str = "sentiment",
        version: str = "1",
    ) -> None:
        # VADER is a lexicon lookup (tens of microseconds a sentence): batching buys
        # nothing, so a batch here only amortises the hop to the worker thread.
        super().__init__(name=name, field=field, batch=Batch(256, "2ms"), version=version)
        self.sentences = sentences

    def model_identity(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"model": f"vaderSentiment {version('vaderSentiment')}", "sentences": self.sentences}

    def run_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        """One score record per text."""
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = load_once("vader", SentimentIntensityAnalyzer)
        return [self.score(analyzer, text) for text in texts]

    def score(self, analyzer: Any, text: str) -> dict[str, Any]:
        """The document's scores, and each sentence's when ``sentences`` is set."""
        parts = split_sentences(text)
        compounds = [analyzer.polarity_scores(s)["compound"] for s in parts]
        n = len(compounds)
        record: dict[str, Any] = {
            "compound": round(sum(compounds) / n, 4) if n else 0.0,
            "positive": round(sum(c >= THRESHOLD for c in compounds) / n, 4) if n else 0.0,
            "negative": round(sum(c <= -THRESHOLD for c in compounds) / n, 4) if n else 0.0,
            "neutral": round(sum(-THRESHOLD < c < THRESHOLD for c in compounds) / n, 4)
            if n
            else 0.0,
            "sentences": n,
        }
        if self.sentences:
            record["by_sentence"] = [
                {"text": s, "compound": c} for s, c in zip(parts, compounds, strict=True)
            ]
        return record


sentiment = Sentiment
"""``hr.models.sentiment(...)``: the name pipelines are written with (see :class:`Sentiment`)."""
