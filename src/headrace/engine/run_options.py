"""How a run goes: every option of :func:`~headrace.run` beside the pipeline, the
source and the sink, with its default and its check, in one place.

``hr.run`` and ``hr.arun`` take these as keyword arguments (their signatures are
tested to list exactly these fields, with the same defaults); recipes and the
command line build a :class:`RunOptions` and hand it to the runner.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..errors import PipelineError
from ..io.keys import Duplicates
from ..limits.budget import Budget
from ..sandbox import Expression
from ..store.session import Mode
from ..values.checks import positive_int
from ..values.durations import to_seconds
from .result import dead_allowed

if TYPE_CHECKING:
    from .result import RunResult

__all__ = [
    "Backend",
    "Duplicates",
    "Durability",
    "Failures",
    "Observing",
    "OnBadInput",
    "OnError",
    "RunOptions",
    "Sink",
]

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
class Durability:
    """Where a durable run keeps itself, and what it does with a run kept there before
    (see :func:`~headrace.arun`)."""

    run_dir: str | os.PathLike[str] | None = None
    run_store: str | None = None
    resume: bool | Literal["auto"] = "auto"
    fresh: bool = False
    force: bool = False
    overwrite: bool = False
    rebuild_sink: bool = False
    retry_dead: bool = False
    rerun: str | None = None

    def __post_init__(self) -> None:
        if self.resume not in (True, False, "auto"):
            raise PipelineError(f"resume must be True, False or 'auto', got {self.resume!r}")
        if self.rerun is not None:
            self._check_rerun(self.rerun)
        if self.fresh and (self.resume is True or self.retry_dead or self.rebuild_sink):
            raise PipelineError("fresh=True starts the run again: it cannot also resume it")
        if self.rebuild_sink and self.resume is False:
            raise PipelineError("rebuild_sink=True goes with resuming a stored run")
        stored = self.resume is True or self.fresh or self.force or self.retry_dead
        if (stored or self.rerun or self.run_store) and self.run_dir is None:
            raise PipelineError(
                "resume=True, fresh, retry_dead, rerun, force and run_store need the run_dir "
                "of a run"
            )

    def _check_rerun(self, where: str) -> None:
        if self.fresh or self.retry_dead or self.rebuild_sink or self.resume is False:
            raise PipelineError(
                "rerun= runs again part of a stored run: it cannot also start it again "
                "(fresh), retry its dead letters (retry_dead), rebuild its sink or refuse "
                "to resume (resume=False)"
            )
        Expression(where, where="rerun")  # a condition that does not parse: refused now

    @staticmethod
    def flags_for(mode: Mode) -> dict[str, Any]:
        """The ``resume``, ``fresh`` and ``retry_dead`` of one of the command line's
        modes: ``"new"``, ``"auto"``, ``"resume"``, ``"fresh"`` or ``"retry_dead"``."""
        resume: bool | Literal["auto"] = {"new": False, "resume": True}.get(mode, "auto")
        return {"resume": resume, "fresh": mode == "fresh", "retry_dead": mode == "retry_dead"}

    @classmethod
    def for_mode(cls, mode: Mode, **values: Any) -> Durability:
        """The durability of a run started in ``mode`` (see :meth:`flags_for`)."""
        return cls(**cls.flags_for(mode), **values)

    @property
    def mode(self) -> Mode:
        """What to do with a run stored in ``run_dir``, as one word."""
        if self.rerun is not None:
            return "rerun"
        if self.retry_dead:
            return "retry_dead"
        if self.fresh:
            return "fresh"
        if self.resume == "auto":
            return "auto"
        return "resume" if self.resume else "new"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failures:
    """What a run does with an item that fails, a record it cannot read, a key that
    repeats, and how many dead letters it accepts (see :func:`~headrace.arun`)."""

    on_error: OnError = "dead_letter"
    on_bad_input: OnBadInput = "dead_letter"
    duplicates: Duplicates = "error"
    max_dead: int | float | str | None = None

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
        if self.max_dead is not None:
            dead_allowed(self.max_dead, 0)  # a bad value is refused before anything runs


@dataclass(frozen=True, slots=True, kw_only=True)
class Observing:
    """How a run shows itself while it runs (see :func:`~headrace.arun`)."""

    progress: bool = True
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        port = self.metrics_port
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
        ):
            raise PipelineError(f"metrics_port must be a port (0 to 65535), got {port!r}")


_GROUPS = {"durability": Durability, "failures": Failures, "observing": Observing}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """A run's options, checked where they are made (see :func:`~headrace.arun` for
    what each means), in three groups beside the few that shape the run itself.

    Made from the flat keywords of :func:`~headrace.run` by :meth:`of` (or
    :meth:`among`); read as ``options.durability.run_dir``,
    ``options.failures.on_error``, ``options.observing.progress``.

    Raises:
        PipelineError: an option is invalid, or two options contradict each other.
    """

    window: int | None = None
    ordered: bool = False
    key: str | Callable[[Any], Any] | None = None
    budget: Budget | None = None
    backend: Backend | None = None
    deadline: datetime.datetime | None = None
    durability: Durability = field(default_factory=Durability)
    failures: Failures = field(default_factory=Failures)
    observing: Observing = field(default_factory=Observing)

    def __post_init__(self) -> None:
        if self.window is not None:
            positive_int(self.window, "window")
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise PipelineError(
                f"budget must be hr.Budget(usd=..., tokens=...), got {self.budget!r}"
            )
        if self.backend is not None:
            self._check_backend()
        if self.deadline is not None and not isinstance(self.deadline, datetime.datetime):
            raise PipelineError(f"deadline must be a datetime here, got {self.deadline!r}")

    @property
    def deadline_at(self) -> float | None:
        """The deadline in Unix seconds, if the run has one."""
        return None if self.deadline is None else self.deadline.timestamp()

    def _check_backend(self) -> None:
        if not isinstance(self.backend, Backend):
            raise PipelineError(
                f"backend must be hr.Ray(...) or None (this process), got {self.backend!r}"
            )
        if self.durability.run_dir is None:
            raise PipelineError(
                "a run on a cluster (backend=...) is durable: give run_dir=... for its store"
            )
        if self.durability.rerun is not None:
            raise PipelineError(
                "rerun= on a cluster (backend=...) is not built yet: a rerun's items run in "
                "this process (leave backend= out), for a run made in one process"
            )
        if self.observing.metrics_port is not None:
            raise PipelineError(
                "metrics_port serves one process's metrics; a run on a cluster (backend=...) "
                "cannot export them yet: see its report (headrace report) instead"
            )
        if self.budget is not None and self.budget.shared is None:
            raise PipelineError(
                "a run on a cluster (backend=...) keeps its budget in Redis, one for every "
                "worker: give hr.Budget(..., shared='redis://...')"
            )

    @classmethod
    def of(cls, **values: Any) -> RunOptions:
        """Options from :func:`~headrace.run`'s flat keywords (``run_dir=...``,
        ``on_error=...``), each put in its group.

        Raises:
            PipelineError: a name that is not an option, or an invalid value.
        """
        unknown = set(values) - set(cls.defaults())
        if unknown:
            raise PipelineError(f"not a run option: {', '.join(sorted(unknown))}")
        grouped: dict[str, Any] = {name: values[name] for name in _OWN if name in values}
        grouped["deadline"] = deadline_of(grouped.get("deadline"))
        for group, kind in _GROUPS.items():
            names = [f.name for f in dataclasses.fields(kind)]
            grouped[group] = kind(**{name: values[name] for name in names if name in values})
        return cls(**grouped)

    @classmethod
    def among(cls, arguments: Mapping[str, Any]) -> RunOptions:
        """The options among a call's arguments: ``RunOptions.among(locals())`` as the
        first line of :func:`~headrace.run` and :func:`~headrace.arun`, whose
        signatures list exactly these options."""
        return cls.of(**{name: arguments[name] for name in cls.defaults()})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option's flat name with its default, as :func:`~headrace.run` lists them."""
        flat = {f.name: f.default for f in dataclasses.fields(cls) if f.name in _OWN}
        for kind in _GROUPS.values():
            flat.update({f.name: f.default for f in dataclasses.fields(kind)})
        return flat

    @classmethod
    def for_mode(cls, mode: Mode, **values: Any) -> RunOptions:
        """Options for a run started in one of the command line's modes (see
        :meth:`Durability.flags_for`)."""
        return cls.of(**Durability.flags_for(mode), **values)

    @property
    def mode(self) -> Mode:
        """What to do with a run stored in ``run_dir``, as one word."""
        return self.durability.mode

    def flat(self) -> dict[str, Any]:
        """These options as :func:`~headrace.run`'s flat keywords."""
        values = {name: getattr(self, name) for name in _OWN}
        for group in _GROUPS:
            values.update(
                {
                    f.name: getattr(getattr(self, group), f.name)
                    for f in dataclasses.fields(_GROUPS[group])
                }
            )
        return values

    def replace(self, **changes: Any) -> RunOptions:
        """These options with some changed (flat names, as :meth:`of` takes them),
        checked again."""
        return RunOptions.of(**{**self.flat(), **changes})


_OWN = ("window", "ordered", "key", "budget", "backend", "deadline")


def deadline_of(value: Any) -> datetime.datetime | None:
    """A run's ``deadline=`` as a moment: a duration from now (``"6h"``, seconds) or a
    ``datetime`` (one without a time zone is this machine's local time).

    Raises:
        PipelineError: neither.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo is not None else value.astimezone()
    seconds = to_seconds(value, option="deadline")
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
