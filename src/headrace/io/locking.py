"""The write fence of a local sink: an OS lock held by the one session that writes it.

The run store's lease says which session owns a run, and every commit checks it;
but a session frozen (SIGSTOP, Ctrl-Z, a debugger) between that check and its
write to the sink would still write once it continues, after another session
took the lease over. A lease cannot stop a write it does not see. So a session
first takes an exclusive ``flock`` on a file beside its sink and holds it for
its whole life: the kernel gives it back the moment the process ends (a SIGKILL
included), and never while the process exists, frozen or not. A second session
on the same host is refused while the first one lives, and nothing it could
write ever meets the first one's writes.

The lock file is hidden and sits beside the output, never inside it (a reader of
a Parquet directory must not meet it): ``.out.jsonl.lock`` beside
``out.jsonl``, ``.packages.part-lock`` beside the ``packages/`` directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..errors import RunBusy, StorageError

__all__ = ["SinkLock", "process_state"]


class SinkLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held until :meth:`release`.

    The file holds the holder's pid (for the message a refused session shows);
    it is never removed, so that two sessions always lock the same inode.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or refuse at once.

        Raises:
            RunBusy: another process (alive, perhaps frozen) holds it.
            StorageError: the lock file cannot be made or opened.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC  # never through a link
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:  # read-only, a link planted there, a full disk
            raise StorageError.writing(self.path, exc, "lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunBusy(_busy(self.what, holder)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = int(text)
        return pid if pid > 0 else None
    return None


def process_state(pid: int) -> str | None:
    """The state letter Linux shows for ``pid`` (``T``: stopped), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: the state follows the last ")"
    rest = stat.rpartition(")")[2].split()
    return rest[0] if rest else None


def _busy(what: str, pid: int | None) -> str:
    if pid is None:
        who = "another process"
    else:
        who = f"pid {pid}"
        if process_state(pid) in ("T", "t"):
            who += (
                f", which is stopped (Ctrl-Z or SIGSTOP): continue it (`fg`, `kill -CONT {pid}`) "
                f"or end it (`kill {pid}`)"
            )
    return (
        f"{what} is being written by another headrace session ({who}); a session that "
        "still exists keeps it even while frozen, so this one stops without touching it"
    )
