"""headrace: pipelines of AI and data steps over large datasets, at the speed of the real limit.

Quick start::

    import headrace as hr

    @hr.step(concurrency=32)
    async def fetch(x: dict) -> dict: ...

    result = hr.run(fetch >> (a | b) >> hr.merge(), items)
    print(result.summary())
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .budget import Budget
from .cache import Cache
from .compose import (
    Branches,
    Filter,
    MapStep,
    Merge,
    Parallel,
    Route,
    Sequence,
    filter,
    map,
    merge,
    parallel,
    route,
)
from .errors import (
    BadInput,
    BudgetExhausted,
    HeadraceError,
    NoRoute,
    OutputTypeError,
    PipelineError,
    ResumeMismatch,
    SourceError,
    StepFailed,
    StepTimeout,
    Throttled,
)
from .io import (
    read_csv,
    read_dir,
    read_jsonl,
    read_parquet,
    read_sql,
    write_batches,
    write_csv,
    write_jsonl,
    write_parquet,
    write_sql,
)
from .limits.circuit import Circuit, CircuitOpen
from .limits.concurrency import AdaptiveConcurrency, ConcurrencyLimit, ConcurrencyStatistics
from .limits.policies import Fallback, Timeout
from .limits.rate import Rate, observe
from .limits.retry import Retry
from .metrics import Histogram, RunMetrics, StepMetrics
from .result import DeadLetter, RunResult
from .runner import arun, default_window, run
from .step import FILTERED, Batch, FunctionStep, Step, step

if _TYPE_CHECKING:
    from . import llm as llm
    from . import models as models


def __getattr__(name: str) -> _Any:
    # hr.llm and hr.models are imported on first use: they bring pydantic and jinja2,
    # or the model libraries, which the engine and the command line's start-up do without
    if name in ("llm", "models"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = _version("headrace")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "FILTERED",
    "BadInput",
    "Budget",
    "BudgetExhausted",
    "Cache",
    "ResumeMismatch",
    "read_csv",
    "read_dir",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "write_batches",
    "write_csv",
    "write_jsonl",
    "write_parquet",
    "write_sql",
    "Batch",
    "Branches",
    "ConcurrencyLimit",
    "ConcurrencyStatistics",
    "DeadLetter",
    "Filter",
    "FunctionStep",
    "HeadraceError",
    "Histogram",
    "MapStep",
    "Merge",
    "NoRoute",
    "OutputTypeError",
    "Parallel",
    "PipelineError",
    "Route",
    "RunMetrics",
    "RunResult",
    "Sequence",
    "SourceError",
    "Step",
    "StepFailed",
    "StepMetrics",
    "StepTimeout",
    "Throttled",
    "Retry",
    "Rate",
    "observe",
    "AdaptiveConcurrency",
    "Circuit",
    "CircuitOpen",
    "Fallback",
    "Timeout",
    "__version__",
    "arun",
    "default_window",
    "filter",
    "map",
    "merge",
    "parallel",
    "route",
    "run",
    "step",
]
