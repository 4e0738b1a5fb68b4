"""Replacing a file whole or not at all."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["replace_atomically"]


def replace_atomically(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content``: a temporary file, fsynced, renamed, the folder
    fsynced (never through a link someone put at the temporary name).

    Raises:
        OSError: the folder cannot be written (the temporary file is removed).
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
