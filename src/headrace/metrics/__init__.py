"""Observing a run, apart from running it: what is counted and how it is shown.

``counters`` holds what a run counts (:class:`StepMetrics`, :class:`RunMetrics`,
histograms); the rest reads those counts: ``run_data`` (a run's metrics as data),
``bottleneck`` and ``verdicts`` (what set the pace, what to change), ``progress``
(the progress line), ``timeline`` (the time series written to the run store),
``exporter`` (Prometheus) and ``otel`` (OpenTelemetry), with ``local_http`` (the
one-thread server of the live page and the metrics port). Limiters, circuits and
LLM steps are read through protocols declared here (:class:`RateCounters`,
:class:`CircuitCounters`, :class:`LLMCounters`), so this package imports none of
them; the engine and the report read it.
"""

from .counters import RunMetrics, StepMetrics, merge_counts, outage_line
from .histogram import Histogram
from .readings import CircuitCounters, LLMCounters, RateCounters

__all__ = [
    "CircuitCounters",
    "Histogram",
    "LLMCounters",
    "RateCounters",
    "RunMetrics",
    "StepMetrics",
    "merge_counts",
    "outage_line",
]
