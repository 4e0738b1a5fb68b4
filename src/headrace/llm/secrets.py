"""API keys: read from the environment or a secrets file, and never shown.

A key is held in a :class:`Secret`, whose ``repr`` and ``str`` are ``'***'``, so
it cannot reach a log line, an error message, a metrics dump or the run store
by accident; only the HTTP ``Authorization`` header reads it, with :meth:`Secret.reveal`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import PipelineError

__all__ = ["Secret", "bound_hosts", "load_secret", "redact"]

_KEY_LIKE = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_\-\.\*]{6,}")


class Secret:
    """A secret string that prints as ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __reduce__(self) -> str:
        raise TypeError("a Secret is not pickled: read it from the environment where it is used")


def load_secret(name: str, secrets_file: str | os.PathLike[str] | None = None) -> Secret | None:
    """The secret called ``name``: from the environment, else from ``secrets_file``.

    The secrets file holds ``NAME=value`` lines (``#`` comments, optional quotes,
    an optional ``export``), the format of a ``.env`` file. Its default is the
    ``HEADRACE_SECRETS_FILE`` environment variable.

    Returns:
        The secret, or ``None`` when neither place has it.

    Raises:
        PipelineError: the secrets file was named but cannot be read, or a line
            of it is malformed (the error names the file and line, not the value).
    """
    value = os.environ.get(name)
    if value:
        return Secret(value)
    path = secrets_file if secrets_file is not None else os.environ.get("HEADRACE_SECRETS_FILE")
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PipelineError(f"cannot read the secrets file {str(path)!r}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").strip()
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise PipelineError(f"{path}:{number}: expected NAME=value")
        if key.strip() == name:
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
                raw = raw[1:-1]
            return Secret(raw) if raw else None
    return None


OPENAI_HOST = "api.openai.com"


def bound_hosts(name: str, secrets_file: str | os.PathLike[str] | None = None) -> set[str]:
    """The hosts the key ``name`` may be sent to, as the user configured them.

    ``<name>_HOSTS`` (comma-separated host names, in the environment or the secrets
    file) binds a key to its endpoints. ``OPENAI_API_KEY`` is also bound to the host
    of ``$OPENAI_BASE_URL``, or to OpenAI's own when that is unset.
    """
    hosts: set[str] = set()
    listed = load_secret(f"{name}_HOSTS", secrets_file)
    if listed is not None:
        hosts.update(h.strip().lower() for h in listed.reveal().split(",") if h.strip())
    if name == "OPENAI_API_KEY":
        base = os.environ.get("OPENAI_BASE_URL")
        hosts.add((urlsplit(base).hostname or "").lower() if base else OPENAI_HOST)
    hosts.discard("")
    return hosts


def redact(text: str, secret: Secret | None) -> str:
    """``text`` with the secret, and anything shaped like an API key, replaced by ``***``."""
    if secret is not None and secret.reveal():
        text = text.replace(secret.reveal(), "***")
    return _KEY_LIKE.sub(lambda m: m.group(1) + "***", text)
