"""Micro-batching local models: State of the Union paragraphs embedded three ways.

In one process, on the same texts (paragraphs at an even stride over the corpus):

(a) ``direct``: one ``model.encode(texts, batch_size=64)`` call, which sorts all
    the texts by length before batching them: the best a hand-written script gets;
(b) ``headrace``: items flowing one at a time into ``hr.models.embed()`` (micro-
    batches of up to 64, each sorted and run in passes of ``pass_size``);
(c) ``single``: ``model.encode([text])`` for one text at a time, as a per-item loop does.

Reported: items/s of each, ``headrace_vs_direct`` = (b)/(a) (target >= 0.90) and
``direct_vs_single`` = (a)/(c), what batching buys on this device. Then VADER: a
plain loop over the same texts against ``hr.models.sentiment()``, as the
per-item overhead in microseconds. Prints one JSON line.

    python bench/microbatch.py [--items 2000] [--device cpu|cuda] [--pass-size N]

``--model DIR`` and ``--texts FILE`` (a JSON list of strings) let it run where
the bundled model and the corpus are not installed (a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import headrace as hr


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--pass-size", type=int, default=None)
    parser.add_argument(
        "--single-items",
        type=int,
        default=None,
        help="texts for (c), default all; fewer keeps a slow device quick",
    )
    parser.add_argument("--model", default=None, help="a local model directory")
    parser.add_argument("--texts", default=None, help="a JSON list of texts, not the corpus")
    args = parser.parse_args()

    if args.texts:
        with open(args.texts) as f:
            texts = json.load(f)[: args.items]
    else:
        from headrace.demo import paragraphs

        texts = [r["text"] for r in paragraphs(args.items)[0]]
    step = hr.models.embed(args.model, device=args.device, pass_size=args.pass_size)
    model = step.loaded()
    model.encode(texts[:64], batch_size=64, show_progress_bar=False)  # warm up

    direct_s = timed(lambda: model.encode(texts, batch_size=64, show_progress_bar=False))
    result = hr.run(step, texts, progress=False)
    assert result.items_out == len(texts), result.summary()
    headrace_s = result.metrics.wall_s
    singles = texts[: args.single_items or len(texts)]
    single_s = timed(lambda: [model.encode([t], show_progress_bar=False) for t in singles])

    sentiment = hr.models.sentiment()
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    loop_s = timed(lambda: [sentiment.score(analyzer, t) for t in texts])
    scored = hr.run(sentiment, texts, progress=False)
    assert scored.items_out == len(texts)

    embed_metrics = result.metrics.step("embed")
    sizes = embed_metrics.batch_sizes
    print(
        json.dumps(
            {
                "bench": "microbatch",
                "device": str(model.device),
                "items": len(texts),
                "direct_items_per_s": round(len(texts) / direct_s, 1),
                "headrace_items_per_s": round(len(texts) / headrace_s, 1),
                "single_items_per_s": round(len(singles) / single_s, 1),
                "headrace_vs_direct": round(direct_s / headrace_s, 3),
                "direct_vs_single": round((len(texts) / direct_s) / (len(singles) / single_s), 3),
                "mean_batch": round(sum(k * v for k, v in sizes.items()) / sum(sizes.values()), 1),
                "batches": sum(sizes.values()),
                "sentiment_loop_us": round(loop_s / len(texts) * 1e6, 1),
                "sentiment_headrace_us": round(scored.metrics.wall_s / len(texts) * 1e6, 1),
                "sentiment_overhead_us": round(
                    (scored.metrics.wall_s - loop_s) / len(texts) * 1e6, 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
