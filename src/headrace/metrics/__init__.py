"""Observing a run, apart from running it: what is counted and how it is shown.

``counters`` holds what a run counts (:class:`StepMetrics`, :class:`RunMetrics`,
histograms); the rest reads those counts: ``run_data`` (a run's metrics as data),
``bottleneck`` and ``verdicts`` (what set the pace, what to change), ``progress``
(the progress line), ``timeline`` (the time series written to the run store),
``exporter`` (Prometheus) and ``otel`` (OpenTelemetry), with ``local_http`` (the
one-thread server of the live page and the metrics port). Call slots, rate limits
and circuits hand this package frozen snapshots (:class:`SlotsReading`,
:class:`RateReading`, :class:`CircuitReading`, through :class:`Readable`), and an
LLM step's counters are read through :class:`LLMCounters`, so this package imports
none of them; the engine and the report read it.
"""

from .counters import RunMetrics, StepMetrics, merge_counts, outage_line
from .histogram import Histogram
from .readings import CircuitReading, LLMCounters, RateReading, Readable, SlotsReading

__all__ = [
    "CircuitReading",
    "Histogram",
    "LLMCounters",
    "RateReading",
    "Readable",
    "SlotsReading",
    "RunMetrics",
    "StepMetrics",
    "merge_counts",
    "outage_line",
]
