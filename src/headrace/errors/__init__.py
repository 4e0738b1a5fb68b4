"""Every error headrace raises, under one base class (the modules that raise them
import them from here): those of a run and its items (``running.py``), of the
services a step calls (``providers.py``), of where a run keeps itself
(``storage.py``) and of recipes (``recipes.py``).

Each class says when it is raised and carries the evidence (step name, item
position, attempts, the chained cause) rather than only a message.
"""

from __future__ import annotations

from .providers import (
    AnswerLost,
    CapacityRefused,
    CircuitOpen,
    MalformedResponse,
    ModelInputError,
    PromptError,
    ProviderError,
    StructuredOutputError,
    Throttled,
)
from .recipes import ExpressionError, GraphError, RecipeError
from .running import (
    BadInput,
    BatchMismatch,
    BudgetExhausted,
    EncodeError,
    HeadraceError,
    MissingExtra,
    NoRoute,
    OutputTypeError,
    PipelineError,
    ProviderDown,
    RemoteError,
    ResumeMismatch,
    RunStopped,
    SourceError,
    StepFailed,
    StepRaisedControl,
    StepTimeout,
    TooManyDead,
)
from .running import control_failure as control_failure
from .running import error_text as error_text
from .storage import (
    LeaseLost,
    NotAFile,
    OutputExists,
    RunBusy,
    SinkDamaged,
    StorageError,
    StoreUnavailable,
)

__all__ = [
    "HeadraceError",
    "PipelineError",
    "MissingExtra",
    "SourceError",
    "StepFailed",
    "StepRaisedControl",
    "StepTimeout",
    "OutputTypeError",
    "NoRoute",
    "AnswerLost",
    "CapacityRefused",
    "BadInput",
    "ResumeMismatch",
    "Throttled",
    "BatchMismatch",
    "BudgetExhausted",
    "ProviderDown",
    "RunStopped",
    "TooManyDead",
    "CircuitOpen",
    "RemoteError",
    "EncodeError",
    "ProviderError",
    "MalformedResponse",
    "PromptError",
    "StructuredOutputError",
    "RecipeError",
    "ModelInputError",
    "GraphError",
    "ExpressionError",
    "RunBusy",
    "LeaseLost",
    "OutputExists",
    "SinkDamaged",
    "StoreUnavailable",
    "StorageError",
    "NotAFile",
]

for _name in __all__:
    # each error is shown, pickled and documented by its public name,
    # headrace.errors.PipelineError, whichever module of this package defines it
    globals()[_name].__module__ = __name__
