"""Errors of a run and its items: the base class, a pipeline refused, an item that failed,
a run stopped."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = [
    "BadInput",
    "BatchMismatch",
    "BudgetExhausted",
    "EncodeError",
    "HeadraceError",
    "MissingExtra",
    "NoRoute",
    "OutputTypeError",
    "PipelineError",
    "ProviderDown",
    "RemoteError",
    "ResumeMismatch",
    "RunStopped",
    "SourceError",
    "StepFailed",
    "StepRaisedControl",
    "StepTimeout",
    "TooManyDead",
    "control_failure",
    "error_text",
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
