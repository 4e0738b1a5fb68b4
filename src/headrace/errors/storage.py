"""Errors of where a run keeps itself: its store, its lease, its sink."""

from __future__ import annotations

from .running import HeadraceError, ResumeMismatch

__all__ = [
    "LeaseLost",
    "NotAFile",
    "OutputExists",
    "RunBusy",
    "SinkDamaged",
    "StorageError",
    "StoreUnavailable",
]


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


class NotAFile(HeadraceError, ValueError):
    """A source or sink path is a FIFO, a device or a socket, not a regular file: a
    source is read more than once and a durable sink is checked and cut back, which
    neither can be. Refused before anything opens it (a FIFO would wait for ever)."""
