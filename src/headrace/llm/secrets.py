"""API keys: read from the environment or a secrets file, and never shown.

A key is held in a :class:`Secret`, whose ``repr`` and ``str`` are ``'***'``, so
it cannot reach a log line, an error message, a metrics dump or the run store
by accident; only the HTTP ``Authorization`` header reads it, with :meth:`Secret.reveal`.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..errors import PipelineError

__all__ = ["Secret", "bound_hosts", "load_secret", "origin", "redact", "shown_origin"]

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

_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url_or_host: str) -> str:
    """The origin ``scheme://host:port`` a key is bound to; a bare host name means https
    on its default port (``api.openai.com`` is ``https://api.openai.com:443``).

    Raises:
        ValueError: not an http(s) URL or host, or a port that is not a number.
    """
    text = url_or_host.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"{url_or_host!r} is not an http(s) URL or a host name")
    port = parts.port or _DEFAULT_PORTS[scheme]  # ValueError for a port that is no number
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def shown_origin(bound: str) -> str:
    """An origin as a user writes it: the bare host for https on port 443."""
    if bound.startswith("https://") and bound.endswith(":443"):
        return bound.removeprefix("https://").removesuffix(":443")
    return bound


def bound_hosts(name: str, secrets_file: str | os.PathLike[str] | None = None) -> set[str]:
    """The origins (``scheme://host:port``) the key ``name`` may be sent to, as the user
    configured them.

    ``<name>_HOSTS`` (comma-separated host names, meaning https on port 443, or
    origins such as ``http://10.0.0.5:8000``, in the environment or the secrets file)
    binds a key to its endpoints. ``OPENAI_API_KEY`` is also bound to the origin
    of ``$OPENAI_BASE_URL``, or to OpenAI's own when that is unset.

    Raises:
        PipelineError: an entry that is not a host or an http(s) origin.
    """
    entries: list[str] = []
    listed = load_secret(f"{name}_HOSTS", secrets_file)
    if listed is not None:
        entries.extend(h for h in listed.reveal().split(",") if h.strip())
    if name == "OPENAI_API_KEY":
        entries.append(os.environ.get("OPENAI_BASE_URL") or OPENAI_HOST)
    bound = set()
    for entry in entries:
        try:
            bound.add(origin(entry))
        except ValueError as exc:
            raise PipelineError(f"{name}_HOSTS or OPENAI_BASE_URL: {exc}") from None
    return bound


def redact(text: str, secret: Secret | None) -> str:
    """``text`` with the secret, its common encodings (base64 at any alignment, as in a
    ``Basic`` header; hex; percent-encoding), and anything shaped like an API key,
    replaced by ``***``."""
    if secret is not None and secret.reveal():
        for form in encodings(secret.reveal()):
            text = text.replace(form, "***")
    return _KEY_LIKE.sub(lambda m: m.group(1) + "***", text)


def encodings(value: str) -> list[str]:
    """``value`` and the forms a server may echo it in, longest first. A base64 form is
    taken at each of the three alignments the value can have inside a longer encoded
    text, without the characters its neighbours change (only where 8 or more stay)."""
    raw = value.encode()
    forms = {value, raw.hex(), quote(value, safe="")}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = -(-offset * 4 // 3)  # characters that hold a byte of the prefix
        end = len(encoded) - (4 if (offset + len(raw)) % 3 else 0)  # the last, padded group
        middle = encoded[start:end].rstrip("=")
        if len(middle) >= 8:
            forms.add(middle)
            forms.add(middle.replace("+", "-").replace("/", "_"))
    return sorted(forms, key=len, reverse=True)
