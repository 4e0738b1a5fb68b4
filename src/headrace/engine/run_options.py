"""How a run goes: every option of :func:`~headrace.run` beside the pipeline, the
source and the sink, with its default and its check, in one place.

``hr.run`` and ``hr.arun`` take these as keyword arguments (their signatures are
tested to list exactly these fields, with the same defaults); recipes and the
command line build a :class:`RunOptions` and hand it to the runner.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from ..errors import PipelineError, positive_int
from ..io.keys import Duplicates
from ..limits.budget import Budget
from ..store.session import Mode
from .result import dead_allowed

if TYPE_CHECKING:
    from .result import RunResult

__all__ = ["Backend", "Duplicates", "OnBadInput", "OnError", "RunOptions", "Sink"]

OnError = Literal["dead_letter", "raise"]
OnBadInput = Literal["dead_letter", "stop"]
Sink = Callable[[Any], Any]


@runtime_checkable
class Backend(Protocol):
    """Where a durable run's items run when not in this process (``hr.Ray``): it splits
    the source into shards and runs each through this same local runner elsewhere."""

    def describe(self) -> dict[str, Any]:
        """A JSON description, stored with the run (a resume runs it the same way)."""

    async def execute(self, plan: Any) -> RunResult:
        """Carry out ``plan`` (a :class:`~headrace.engine.plan.RunPlan`, which holds
        these options: typed ``Any`` here so that the two modules do not import each
        other); the same result as the local run loop's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """A run's options, checked where they are made (see :func:`~headrace.arun` for
    what each means).

    Raises:
        PipelineError: an option is invalid, or two options contradict each other.
    """

    window: int | None = None
    ordered: bool = False
    on_error: OnError = "dead_letter"
    progress: bool = True
    run_dir: str | os.PathLike[str] | None = None
    run_store: str | None = None
    resume: bool | Literal["auto"] = "auto"
    fresh: bool = False
    force: bool = False
    overwrite: bool = False
    rebuild_sink: bool = False
    key: str | Callable[[Any], Any] | None = None
    on_bad_input: OnBadInput = "dead_letter"
    retry_dead: bool = False
    duplicates: Duplicates = "error"
    budget: Budget | None = None
    max_dead: int | float | str | None = None
    backend: Backend | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.on_error not in ("dead_letter", "raise"):
            raise PipelineError(f"on_error must be 'dead_letter' or 'raise', got {self.on_error!r}")
        if self.duplicates not in ("error", "first", "suffix"):
            raise PipelineError(
                f"duplicates must be 'error', 'first' or 'suffix', got {self.duplicates!r}"
            )
        if self.on_bad_input not in ("dead_letter", "stop"):
            raise PipelineError(
                f"on_bad_input must be 'dead_letter' or 'stop', got {self.on_bad_input!r}"
            )
        if self.window is not None:
            positive_int(self.window, "window")
        if self.resume not in (True, False, "auto"):
            raise PipelineError(f"resume must be True, False or 'auto', got {self.resume!r}")
        if self.fresh and (self.resume is True or self.retry_dead or self.rebuild_sink):
            raise PipelineError("fresh=True starts the run again: it cannot also resume it")
        if self.rebuild_sink and self.resume is False:
            raise PipelineError("rebuild_sink=True goes with resuming a stored run")
        stored = self.resume is True or self.fresh or self.force or self.retry_dead
        if (stored or self.run_store) and self.run_dir is None:
            raise PipelineError(
                "resume=True, fresh, retry_dead, force and run_store need the run_dir of a run"
            )
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise PipelineError(
                f"budget must be hr.Budget(usd=..., tokens=...), got {self.budget!r}"
            )
        if self.max_dead is not None:
            dead_allowed(self.max_dead, 0)  # a bad value is refused before anything runs
        if self.metrics_port is not None:
            port = self.metrics_port
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise PipelineError(f"metrics_port must be a port (0 to 65535), got {port!r}")
        if self.backend is not None:
            self._check_backend()

    def _check_backend(self) -> None:
        if not isinstance(self.backend, Backend):
            raise PipelineError(
                f"backend must be hr.Ray(...) or None (this process), got {self.backend!r}"
            )
        if self.run_dir is None:
            raise PipelineError(
                "a run on a cluster (backend=...) is durable: give run_dir=... for its store"
            )
        if self.metrics_port is not None:
            raise PipelineError(
                "metrics_port serves one process's metrics; a run on a cluster (backend=...) "
                "cannot export them yet: see its report (headrace report) instead"
            )
        if self.budget is not None and self.budget.shared is None:
            raise PipelineError(
                "a run on a cluster (backend=...) keeps its budget in Redis, one for every "
                "worker: give hr.Budget(..., shared='redis://...')"
            )

    NAMES: ClassVar[frozenset[str]]
    """Every option's name."""

    @classmethod
    def among(cls, arguments: Mapping[str, Any]) -> RunOptions:
        """The options among a call's arguments: ``RunOptions.among(locals())`` as the
        first line of :func:`~headrace.run` and :func:`~headrace.arun`, whose
        signatures list exactly these options."""
        return cls(**{name: arguments[name] for name in cls.NAMES})

    @classmethod
    def for_mode(cls, mode: Mode, **values: Any) -> RunOptions:
        """Options for a run started in one of the command line's modes: ``"new"``,
        ``"auto"``, ``"resume"``, ``"fresh"`` or ``"retry_dead"``."""
        resume: bool | Literal["auto"] = {"new": False, "resume": True}.get(mode, "auto")
        return cls(resume=resume, fresh=mode == "fresh", retry_dead=mode == "retry_dead", **values)

    @property
    def mode(self) -> Mode:
        """What to do with a run stored in ``run_dir``, as one word."""
        if self.retry_dead:
            return "retry_dead"
        if self.fresh:
            return "fresh"
        if self.resume == "auto":
            return "auto"
        return "resume" if self.resume else "new"

    def replace(self, **changes: Any) -> RunOptions:
        """These options with some changed, checked again."""
        return dataclasses.replace(self, **changes)


RunOptions.NAMES = frozenset(f.name for f in dataclasses.fields(RunOptions))
