"""headrace: pipelines of AI and data steps over large datasets, at the speed of the real limit.

Quick start::

    import headrace as hr

    @hr.step(concurrency=32)
    async def fetch(x: dict) -> dict: ...

    result = hr.run(fetch >> (a | b) >> hr.merge(), items)
    print(result.summary())
"""

from collections.abc import Iterable as _Iterable
from collections.abc import Sequence as _Sequence
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from os import PathLike as _PathLike
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .cache import Cache
from .cluster import Ray
from .engine.result import DeadLetter, RunResult
from .engine.runner import arun, default_window, rerun, run
from .errors import (
    BadInput,
    BatchMismatch,
    BudgetExhausted,
    HeadraceError,
    NoRoute,
    OutputTypeError,
    PipelineError,
    ProviderDown,
    ResumeMismatch,
    RunStopped,
    SourceError,
    StepFailed,
    StepTimeout,
    Throttled,
    TooManyDead,
)
from .io import (
    read_csv,
    read_dataset,
    read_dir,
    read_jsonl,
    read_parquet,
    read_sql,
    write_batches,
    write_csv,
    write_dataset,
    write_jsonl,
    write_parquet,
    write_sql,
)
from .limits.budget import Budget
from .limits.circuit import Circuit, CircuitOpen
from .limits.concurrency import AdaptiveConcurrency, ConcurrencyLimit, ConcurrencyStatistics
from .limits.policies import Timeout
from .limits.rate import Rate
from .limits.rate_state import observe
from .limits.retry import Retry
from .metrics import Histogram, RunMetrics, StepMetrics
from .metrics.verdicts import Verdict
from .pipeline.compose import (
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
from .pipeline.decorator import step
from .pipeline.graph import OTHERWISE, Edge, Graph, GraphError, Node, edge, graph, node
from .pipeline.keep import with_input
from .pipeline.options import Fallback
from .pipeline.step import FILTERED, Batch, FunctionStep, Step

if _TYPE_CHECKING:
    from . import llm as llm
    from . import models as models
    from . import recipe as recipe
    from .forecast import Estimate


def __getattr__(name: str) -> _Any:
    # hr.llm, hr.models and hr.recipe are imported on first use: they bring pydantic,
    # PyYAML or the model libraries, which the engine and the command line's start-up
    # do without
    if name in ("llm", "models", "recipe"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_recipe(
    path: str | _PathLike[str],
    *,
    overrides: _Iterable[str] = (),
    allow: _Sequence[str] | None = None,
) -> Step[_Any, _Any]:
    """The pipeline a YAML recipe describes, a step like any other (see :mod:`headrace.recipe`).

    Args:
        path: the recipe file.
        overrides: ``key.path=value`` settings applied first (as ``--set`` does).
        allow: import only modules under these prefixes (as ``--allow`` does).

    Raises:
        RecipeError: every problem found, each naming ``file:line:column`` and the field.
    """
    from .recipe import load_recipe as _load

    return _load(path, overrides=overrides, allow=allow)


def estimate(pipeline: _Any, source: _Any, **options: _Any) -> "Estimate":
    """What running ``pipeline`` over ``source`` will cost and take on each tier, p10 /
    p50 / p90, from a stratified sample run for real first (see
    :func:`headrace.forecast.estimate` for the options: ``sample``, ``chunks``, ``seed``,
    ``batch_turnaround``, ``run_dir``).

    Raises:
        PipelineError: a bad option, or a source with no item.
    """
    from .forecast import estimate as _estimate

    return _estimate(pipeline, source, **options)


try:
    __version__ = _version("headrace")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "FILTERED",
    "OTHERWISE",
    "Edge",
    "Graph",
    "GraphError",
    "Node",
    "edge",
    "graph",
    "node",
    "load_recipe",
    "estimate",
    "BadInput",
    "Budget",
    "BudgetExhausted",
    "BatchMismatch",
    "ProviderDown",
    "RunStopped",
    "TooManyDead",
    "Cache",
    "ResumeMismatch",
    "read_csv",
    "read_dataset",
    "read_dir",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "write_batches",
    "write_csv",
    "write_dataset",
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
    "Verdict",
    "Sequence",
    "SourceError",
    "Step",
    "StepFailed",
    "StepMetrics",
    "StepTimeout",
    "Throttled",
    "Retry",
    "Rate",
    "Ray",
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
    "rerun",
    "run",
    "step",
    "with_input",
]
