"""Every error headrace raises, under one base class (the modules that raise them
import them from here; their old homes still re-export them).

Each class says when it is raised and carries the evidence (step name, item
position, attempts, the chained cause) rather than only a message.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ._types import Problem

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


def error_text(error: BaseException) -> str:
    """``str(error)``, or words saying it could not be shown: an exception whose
    ``__str__`` raises must fail its item, not the run. A ``KeyError`` raised with a
    sentence reads as that sentence (``str()`` would quote it as a key)."""
    try:
        if (
            isinstance(error, KeyError)
            and len(error.args) == 1
            and isinstance(error.args[0], str)
            and " " in error.args[0]
        ):  # a sentence, which str() would show quoted as the key it is not
            return error.args[0]
        return str(error)
    except Exception as failed:
        return (
            f"<the {type(error).__name__}'s message cannot be shown: its __str__ raised "
            f"{type(failed).__name__}>"
        )


def nearest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_options(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Refuse option names not in ``known``, suggesting the nearest one.

    Raises:
        PipelineError: ``where: unknown option 'concurency' (did you mean ...?)``.
    """
    options = sorted(known)
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise PipelineError(
            f"{where}: unknown option {unknown[0]!r}{nearest(unknown[0], options)}; "
            f"options are {', '.join(options)}"
        )


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an ``int`` of 1 or more (not a ``bool``).

    Raises:
        PipelineError: ``{name} must be a positive integer, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{name} must be a positive integer, got {value!r}")
    return value


def positive_number(value: object, name: str) -> float:
    """``value`` if it is a number above 0 (not a ``bool``).

    Raises:
        PipelineError: ``{name} must be a positive number, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PipelineError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class HeadraceError(Exception):
    """Base class of every error raised by headrace."""


class PipelineError(HeadraceError, TypeError):
    """A pipeline or step is built wrongly: raised where it is built, before any item runs.

    Examples: composing something that is not a step or callable, a process-executor
    function that cannot be pickled, a merge after a step that is not a fan-out,
    or an invalid option value.
    """


class MissingExtra(PipelineError):
    """A part of the run needs an optional library that is not installed; the message
    names the part, the module and the extra to install. Raised before the run starts."""


class SourceError(HeadraceError, TypeError):
    """The source given to a run cannot be read as items.

    Raised before anything runs when the source is not iterable, and at the end of
    a run when the source's own iterator raised (the items it had yielded finish
    first; ``result`` then holds what the run did).
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> Any:
        return (type(self), (str(self),))


class StepFailed(HeadraceError):
    """One item failed in one step.

    The runner turns this into a dead letter, or raises it when the run was asked
    to stop on the first error (``on_error="raise"``). The original exception is
    chained as ``__cause__`` and kept in ``cause``.

    Attributes:
        step: name of the step that failed.
        cause: the exception the step raised.
        attempts: how many times the step was called for this item.
        index: position of the item in the source (set by the runner).
    """

    def __init__(self, step: str, cause: BaseException, *, attempts: int | None = None) -> None:
        super().__init__(f"step {step!r} failed: {type(cause).__name__}: {error_text(cause)}")
        self.step = step
        self.cause = cause
        # a cause that retried inside (an LLM client's requests) says how often it tried
        self.attempts = attempts if attempts is not None else getattr(cause, "headrace_attempts", 1)
        self.index: int | None = None

    def __reduce__(self) -> Any:
        return (_rebuild_step_failed, (self.step, self.cause, self.attempts, self.index))


class StepRaisedControl(HeadraceError):
    """A step raised an exception meant to stop a program or a task, not to fail an
    item (``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError`` while
    nothing cancelled it, or ``StopIteration``, which cannot cross a thread's
    future): it is that item's failure, so the run goes on and ends. A real Ctrl-C
    of the run still stops it. The original is the ``__cause__``.
    """

    def __init__(self, raised: BaseException) -> None:
        text = error_text(raised)
        super().__init__(
            f"the step raised {type(raised).__name__}{f': {text}' if text else ''}, which "
            "stops a program or a task rather than failing an item; taken as this item's failure"
        )

    def __reduce__(self) -> Any:  # from a worker process: the words, not the original
        return (_rebuild_control, (str(self),))


def _rebuild_control(message: str) -> StepRaisedControl:
    rebuilt = StepRaisedControl.__new__(StepRaisedControl)
    HeadraceError.__init__(rebuilt, message)
    return rebuilt


def control_failure(raised: BaseException) -> StepRaisedControl | None:
    """The item's failure for ``raised`` when a step raised it, or ``None`` when it must go
    on up: a real cancellation of the running task (Ctrl-C, a stopped run), or an
    exception that is neither a control one nor an ordinary one (``GeneratorExit``)."""
    if isinstance(raised, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop: raised in a thread, where nothing cancels it
            task = None
        if task is not None and task.cancelling():
            return None
        return StepRaisedControl(raised)
    if isinstance(raised, KeyboardInterrupt | SystemExit | StopIteration | StopAsyncIteration):
        return StepRaisedControl(raised)
    return None


class StepTimeout(HeadraceError, TimeoutError):
    """A step's call ran longer than its ``timeout``."""

    def __init__(self, step: str, timeout_s: float) -> None:
        super().__init__(f"step {step!r} took longer than its timeout of {timeout_s:g}s")
        self.step = step
        self.timeout_s = timeout_s

    def __reduce__(self) -> Any:
        return (type(self), (self.step, self.timeout_s))


class OutputTypeError(HeadraceError, TypeError):
    """A step declared with ``validate=True`` returned a value of the wrong type."""


class BadInput(HeadraceError, ValueError):
    """A record of the source could not be read (its message names file and line).

    It becomes a dead letter of step ``<source>``; with ``on_bad_input="stop"`` the
    run stops at the first one, after committing the items already finished, and
    raises it with ``result`` set.
    """

    result: Any = None


class ResumeMismatch(HeadraceError):
    """A run cannot be resumed as asked: the pipeline, source or sink differs from the
    stored run, or there is no run to resume. ``force=True`` (``--force``) resumes
    anyway after a pipeline change, and the store records that it was forced."""


class Throttled(HeadraceError):
    """Raised by a step to say that the provider refused the call for now (an HTTP 429).

    A step calling any API with any client raises it so that headrace can back
    off: :class:`~headrace.limits.retry.Retry` retries it, waiting at least
    ``retry_after`` seconds. (Exceptions of aiohttp, httpx, requests and the
    ``openai`` SDK that carry status 429 are recognised without it.)

    Args:
        retry_after: seconds the provider asked to wait, if it said.
        headers: the response's headers (``retry-after-ms``, ``x-ratelimit-*``).
    """

    def __init__(
        self,
        message: str = "throttled by the provider",
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def __reduce__(self) -> Any:
        return (_rebuild_throttled, (str(self), self.retry_after, self.headers))


def _rebuild_throttled(message: str, retry_after: float | None, headers: dict[str, str]) -> Any:
    return Throttled(message, retry_after=retry_after, headers=headers)


class RunStopped(HeadraceError):
    """An item could not go on for a reason that is the run's, not the item's.

    The item is left unfinished, not dead: the run stops taking new items,
    finishes what is in flight, and ends cleanly with ``result.stopped`` set to
    this message, so that a resume carries on from there.
    """


class BudgetExhausted(RunStopped):
    """A call was not made because the run's :class:`~headrace.limits.budget.Budget` is spent
    (a :class:`RunStopped`: a resume with a new budget carries on)."""


class ProviderDown(RunStopped):
    """A provider's circuit stayed open longer than its ``max_outage``: the provider is
    down, not the items (a :class:`RunStopped`: a resume carries on once it is back)."""


class TooManyDead(HeadraceError):
    """More items ended as dead letters than ``max_dead`` allows (``hr.run(max_dead=...)``).

    Raised after the run ended, everything in it committed; ``result`` holds the
    run's :class:`~headrace.engine.result.RunResult`.
    """

    result: Any = None


class BatchMismatch(HeadraceError, ValueError):
    """A batched function returned a number of outputs other than its number of inputs.

    It is the function's fault, not an item's: the batch is not halved to look for
    a culprit, and each of its items fails with this message, as it first happened.
    """


class NoRoute(HeadraceError, LookupError):
    """A router's selector chose a branch that does not exist and there is no default."""


def _rebuild_step_failed(
    step: str, cause: BaseException, attempts: int, index: int | None
) -> StepFailed:
    failure = StepFailed(step, cause, attempts=attempts)
    failure.index = index
    return failure


class RunBusy(HeadraceError):
    """Another session holds the run's lease: it is running now (its heartbeat is recent).

    Two sessions of one run would write the sink twice; the second is refused
    before it touches the sink. A lease whose holder stopped beating is taken over.
    """


class LeaseLost(HeadraceError):
    """This session's lease on its run was taken over by another session (its heartbeat
    had stopped long enough to look dead); the session stops without committing more."""


class OutputExists(HeadraceError):
    """A new run's sink already holds output that this run did not write; it is left
    alone unless the run is asked to overwrite it (``overwrite=True``, ``--overwrite``)."""


class SinkDamaged(ResumeMismatch):
    """On resume, the sink no longer holds what the run store says was committed (a
    file deleted, cut short or edited; a part missing). Resuming would lose those
    items silently; ``rebuild_sink=True`` (``--rebuild-sink``) sets the damaged output
    aside and computes its items again."""


class StoreUnavailable(HeadraceError):
    """The run store stopped answering for longer than the run waits for it
    (``$HEADRACE_STORE_OUTAGE_S``, 60 s by default); the run stopped, resumable."""

    resumable = True


class StorageError(HeadraceError):
    """A sink or run store could not be written or read (a full disk, a damaged file).

    The message is one line naming the file, what went wrong and, for a full disk,
    the space left; what was committed before is intact and the run resumes.
    """

    @classmethod
    def writing(cls, path: object, error: BaseException, what: str = "write") -> StorageError:
        """The error for ``error`` raised while doing ``what`` to ``path``."""
        import errno
        import shutil
        from pathlib import Path

        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        text = f"cannot {what} {path}: {reason}"
        if getattr(error, "errno", None) == errno.ENOSPC or "disk is full" in str(error):
            folder = Path(str(path)).parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            try:
                free = shutil.disk_usage(folder).free
                text += f" ({free:,} bytes free on its disk)"
            except OSError:
                pass
        failure = cls(text + "; what was committed is intact: make room, then resume the run")
        failure.resumable = True
        return failure

    resumable = False
    """Whether the run stopped resumably (the CLI then names the resume command)."""


class CircuitOpen(HeadraceError):
    """A call was refused without being made: the step's circuit breaker is open."""


class RemoteError(HeadraceError):
    """An exception raised in a worker process that could not be sent back as itself.

    Attributes:
        type_name: the qualified name of the original exception's type.
        remote_traceback: the traceback text from the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        return (RemoteError, (self.type_name, self.message, self.remote_traceback))


class EncodeError(HeadraceError, TypeError):
    """An output that cannot be stored in the cache."""


class ProviderError(HeadraceError):
    """The provider answered with an error status other than 429.

    Retried (by the default :class:`~headrace.limits.retry.Retry`) for a 5xx;
    not for a 4xx, which says the request itself is wrong.

    Attributes:
        status: the HTTP status.
        headers: the response's headers.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.headers = dict(headers or {})

    def __reduce__(self) -> Any:
        return (type(self), (self.status, str(self).partition(": ")[2], self.headers))


class MalformedResponse(HeadraceError, ConnectionError):
    """The provider's answer could not be read (not JSON, cut short, missing fields).
    Retried like a broken connection."""


class PromptError(HeadraceError, ValueError):
    """A record cannot fill a prompt: a field is missing or a template failed on it."""


class StructuredOutputError(HeadraceError, ValueError):
    """The model's answer did not validate against the output model (after its repair)."""


class RecipeError(HeadraceError, ValueError):
    """A recipe that cannot run; ``problems`` lists every error found, each with its place."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.place.file, p.place.line, p.place.column, p.message)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelInputError(HeadraceError, TypeError):
    """An item has no text where a model step looks for it."""


class GraphError(PipelineError):
    """A graph that cannot run: names the node or the edge (its position in ``edges``)."""

    def __init__(self, message: str, *, node: str | None = None, edge: int | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.edge = edge


class ExpressionError(HeadraceError, ValueError):
    """An expression broke a sandbox rule, or failed on the values it was given."""


class NotAFile(HeadraceError, ValueError):
    """A source or sink path is a FIFO, a device or a socket, not a regular file: a
    source is read more than once and a durable sink is checked and cut back, which
    neither can be. Refused before anything opens it (a FIFO would wait for ever)."""
